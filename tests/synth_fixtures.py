"""A small curated dataset (the curate stage's output schema) for synthesis tests."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq

RECORD_TYPE = pa.struct(
    [
        ("record_id", pa.string()),
        ("timestamp", pa.int64()),
        ("kind", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("context", pa.string()),
        ("item_id", pa.string()),
        ("rating", pa.float64()),
        ("extra", pa.string()),
    ]
)
CURATED_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("platform", pa.string()),
        ("chunk", pa.int64()),
        ("n_records", pa.int64()),
        ("records", pa.list_(RECORD_TYPE)),
    ]
)

# Realistic, already-cleaned English posts (no URLs, no handles), one theme per user.
_POSTS = {
    "reddit": [
        ("post", "Finally finished my first marathon", "After six months of early runs I crossed the finish line in just under five hours. My knees hurt and I cried a little at mile 24, but my sister was waiting at the end with a sign and it was worth every cold morning."),
        ("comment", "", "I had the same problem with shin splints when I started. What helped me was slowing down my easy runs a lot and buying shoes from a running store where they watched me on a treadmill. Took about a month to go away."),
        ("post", "Should I tell my roommate I am moving out?", "My lease ends in two months and I found a cheaper place closer to work. My roommate has been struggling lately and I feel guilty, so I keep putting off the conversation even though I know waiting makes it worse."),
        ("comment", "", "Honestly the best thing I did for my anxiety was to stop checking work email after eight in the evening. It felt irresponsible at first but nobody noticed and I sleep so much better now."),
        ("post", "My grandmother taught me to bake bread", "Every Sunday she let me knead the dough while she told stories about growing up on the farm. She passed away last spring and this weekend I baked her recipe alone for the first time. The kitchen smelled exactly like hers."),
        ("comment", "", "I volunteered at the food bank on Saturday and was surprised how many young families came in. It made me rethink how I complain about small things. Signing up for two shifts a month from now on."),
    ],
    "twitter": [
        ("tweet", "", "Missed the bus again this morning so I walked the whole way and honestly it was the best part of my day, the park was quiet and foggy and I did not check my phone once."),
        ("tweet", "", "Spent my entire evening fixing a bug that turned out to be a single missing comma. I am equal parts relieved and embarrassed, and I am going to bed before anything else breaks."),
        ("tweet", "", "My little brother got into the college he wanted and called me before he called anyone else. I am so proud of him I could burst, he worked so hard for this."),
        ("tweet", "", "Tried to cook dinner for friends for the first time and burned the rice, but everyone laughed and we ordered pizza and it turned into the best night we have had in months."),
        ("tweet", "", "Rainy Sunday, a pot of tea, and a book I have been saving for months. Turning my phone off and not apologizing to anyone about it today."),
        ("tweet", "", "Handed in my notice today. Scared about what comes next but staying in a job that made me dread every Monday was not fair to me or to the people around me."),
    ],
    "amazon": [
        ("review", "Sturdy and quiet", "I bought this blender to make smoothies before work and it is surprisingly quiet, which matters because my partner sleeps later than I do. It crushes ice well, although the lid is a little hard to clean."),
        ("review", "Not what I expected", "The pictures made this backpack look much bigger than it is. It fits a small laptop and a lunch box and not much else. The zippers feel cheap and one already sticks, so I am returning it."),
        ("review", "Great gift for my dad", "My father loves gardening and these gloves were a hit. He says they are comfortable even after a full afternoon of weeding and they still look new after a month of use in the yard."),
        ("review", "Works, but the app is bad", "The thermostat itself is fine and it saved us money on heating this winter, but the app logs me out constantly and the schedule screen is confusing. I would buy it again only if they fix the software."),
        ("review", "Perfect for small apartments", "This drying rack folds flat and fits behind my door. It holds a full load of laundry and has not wobbled once. For the price I am very happy with it and I have recommended it to my neighbours."),
        ("review", "Stopped working after two weeks", "The headphones sounded great at first, then the left side started cutting out. Customer support asked me to reset them three times before offering a replacement. Disappointing for the price."),
    ],
}


def curated_rows(n_users: int = 4, n_records: int = 6, short_user: bool = False):
    """Rows in the curated schema: users cycle over platforms; optionally one user with 2 posts."""
    rows = []
    platforms = list(_POSTS)
    for u in range(n_users):
        platform = platforms[u % len(platforms)]
        posts = _POSTS[platform]
        k = 2 if (short_user and u == n_users - 1) else n_records
        records = []
        for i in range(k):
            kind, title, text = posts[(i + u) % len(posts)]
            records.append(
                {
                    "record_id": f"{platform}:u{u}r{i}",
                    "timestamp": 1_600_000_000 + 86_400 * i,
                    "kind": kind,
                    "title": title,
                    "text": text,
                    "context": "r/running | Training questions" if kind == "comment" else ("Kitchen gadgets" if kind == "review" else ""),
                    "item_id": f"B00ITEM{i}" if kind == "review" else "",
                    "rating": float(1 + (i + u) % 5) if kind == "review" else None,
                    "extra": "{}",
                }
            )
        rows.append({"user_id": f"user{u:02d}", "platform": platform, "chunk": 0, "n_records": k, "records": records})
    return rows


def write_curated(stage_dir: str, **kwargs) -> str:
    """Write {stage_dir}/data/part-0.parquet (+ _SUCCESS, like a finished curate stage)."""
    data = os.path.join(stage_dir, "data")
    os.makedirs(data, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(curated_rows(**kwargs), schema=CURATED_SCHEMA), os.path.join(data, "part-0.parquet"))
    with open(os.path.join(stage_dir, "_SUCCESS"), "w") as fh:
        fh.write('{"hash": "test-curated"}\n')
    return stage_dir
