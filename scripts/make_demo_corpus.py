#!/usr/bin/env python
"""Generate the shipped demo corpus in ``humanllm_ray/demo_corpus/``.

All texts below are original, hand-written fiction (no third-party data).  The script is fully
deterministic: every random choice uses a fixed seed, so re-running it rewrites byte-identical
files.  Native formats:

* reddit/submissions.ndjson, reddit/comments.ndjson.zst   (Pushshift NDJSON)
* twitter/sentiment140_demo.csv                           (Sentiment140 CSV, CRLF, no header)
* blogger/<id>.<gender>.<age>.<industry>.<sign>.xml       (Blog Authorship Corpus, CRLF)
* amazon/reviews_Demo.jsonl, amazon/meta_Demo.jsonl       (Amazon Reviews 2023)

Deliberate noise is documented in humanllm_ray/demo_corpus/README.md.

Usage:  python scripts/make_demo_corpus.py [--out DIR]
"""
from __future__ import annotations

import argparse
import calendar
import datetime as dt
import hashlib
import json
import random
from pathlib import Path

import zstandard

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "humanllm_ray" / "demo_corpus"

# =============================================================================================
# REDDIT
# =============================================================================================
# Users (persona notes are documentation only; the text is what the model sees):
#   night_shift_fern    ICU nurse on nights in Pennsylvania, vegetable gardener, warm and practical
#   greasy_spokes_bill  68-year-old retired machinist from Erie, restores old bikes, terse
#   pixelmoth_          CS sophomore, indie/game-jam hobbyist, lowercase, anxious and earnest
#   sleepless_in_duluth first-time dad (son Eli, born Nov 2019), HVAC tech in Duluth
#   sourdough_sasha     CPA in Portland who bakes bread, organised, wry, likes lists
#   theo_looks_up       middle-school science teacher in New Mexico, amateur astronomer
#   stacks_and_static   rural librarian who reads old science fiction, long bookish sentences
#   dovetail_dev        burnt-out senior software engineer learning hand-tool woodworking
#   marathon_maybe      44-year-old truck dispatcher, lost weight, beginner runner
#   kettle_and_kin      Jamaican-British ESL teacher in Gunma, Japan, cooks a lot
# Short users (filtered out later): curious_kat_77, drive_by_dan, throwaway_8812.

# key -> (author, subreddit, date, title, selftext)
REDDIT_SUBMISSIONS = {
    "f1": ("night_shift_fern", "nursing", "2019-02-10", "Six years of nights and I think I finally figured out sleep",
           "For anyone new to night shift who is struggling: I was a zombie for most of my first three years. What finally worked for me wasn't melatonin or the fancy blackout curtains (although those help). It was keeping the same schedule on my days off. I know, I know. Everyone wants to be a day person on the weekend. But flipping back and forth every week was wrecking me.\n\nNow I sleep 8:30am to 3:30pm no matter what, eat 'breakfast' at 4, and get a couple of hours in the garden before I head in. My husband Rob thinks I'm a vampire. My tomatoes do not care what time it is. Happy to answer questions if anyone is in the same boat."),
    "f2": ("night_shift_fern", "gardening", "2019-06-22", "Gardening on a night-shift schedule: my headlamp tomato season so far",
           "Since I work 7p-7a in an ICU, most of my gardening happens either at 5pm when the sun is brutal or at 7:45am when I get home and should be asleep. This year I tried doing the evening watering and the morning harvesting and it has honestly worked better than I expected.\n\nCurrently growing: Cherokee Purple, Sungold, two San Marzanos that are sulking, a row of bush beans, and way too much basil. The Sungolds are already over the top of the cage. Only real problem is slugs, which I now hunt at 6am with a headlamp and a cup of soapy water like some kind of deranged park ranger. Any tips for slugs that don't involve beer traps? The raccoons drink the beer."),
    "f3": ("night_shift_fern", "nursing", "2019-09-03", "The quiet patients are the ones I think about on the drive home",
           "Not a vent exactly, just something I've been chewing on. We had an older man last month who never once hit his call light. Post-op, lots of pain, and he would just lie there with his jaw clenched because he 'didn't want to be a bother.' I only caught it because his heart rate kept creeping up on the monitor.\n\nThe loud patients get attention because they demand it. The ones who apologize for existing are the ones who quietly get worse at 3am. I've started doing an extra walk-by at 2 and 4 for anyone I flag as a 'won't ask' person. Curious if other night nurses have little habits like this."),
    "f4": ("night_shift_fern", "gardening", "2019-10-14", "First time saving pepper seeds and they all look dead. Did I mess this up?",
           "I grew a jalapeño and a Hungarian wax this year (plus the tomatoes I keep posting about, sorry) and wanted to try saving seeds for the first time. I scraped them out of fully red peppers, spread them on a paper plate, and left them on top of the fridge for two weeks.\n\nThey're now tan and shriveled and a few are glued to the plate. Is that normal? I did a paper towel germination test with ten and only two sprouted after nine days. I'm wondering if the top of the fridge was too warm or if I picked them too early. Would love advice before I throw them all in an envelope labeled 'maybe.'"),
    "b1": ("greasy_spokes_bill", "bicycling", "2019-04-02", "Restored a 1974 Raleigh Super Course my neighbor was throwing out",
           "Neighbor was cleaning out his garage and had this sitting by the curb with flat tires and a rusted chain. Reynolds 531 main tubes, which is why I grabbed it. Took about six weeks of evenings.\n\nStripped it to the frame, soaked every small part in Evapo-Rust, repacked the cup-and-cone bearings, and trued both wheels on a stand I built in 1988. The Huret derailleur was shot so I put on a Suntour from my parts drawer. Left the paint alone except for touching up chips. Looks its age and I like it that way. Rides better than anything new I have tried at the shop. Pictures when my granddaughter shows me how to upload them."),
    "b2": ("greasy_spokes_bill", "Machinists", "2019-05-18", "Retired after 41 years on manual machines. Some things I wish I knew at 20.",
           "Started at 19 in a job shop in Erie running a Monarch lathe, finished on a Bridgeport in a maintenance department making parts nobody else could find. No CNC experience to speak of, so take this with that in mind.\n\n1. Buy your own indicators and mics and keep them clean. Shop tools get dropped.\n2. Write down feeds and speeds that worked. I have four notebooks. Still use them.\n3. Learn to grind a tool bit by hand even if you never have to.\n4. Hearing protection. I did not wear it enough and I say 'what' a lot now.\n5. The old guys are cranky but most of them want to teach you. Ask."),
    "b3": ("greasy_spokes_bill", "bicycling", "2019-11-09", "Made my own cotter press rather than pay sixty bucks for one",
           "Working on another old three-speed, a Raleigh Sports this time, and the cotter pins in the cranks were rusted solid. Hammering them out is how you mushroom the pin and crack a bearing race, so I made a press out of a C-clamp, a piece of 1 inch round stock drilled out to clear the pin, and a socket for the other side.\n\nTook about an hour on the lathe in the garage. Popped both pins with no damage. If anybody wants the dimensions I will write them up. Not complicated. The trick is supporting the crank arm so the force goes through the pin and not the spindle."),
    "p1": ("pixelmoth_", "indiegaming", "2019-10-28", "i finished my first game jam game in 48 hours and it's bad and i love it",
           "so this weekend i did my first game jam (theme was 'out of control') and i made a tiny platformer where your character sneezes every few seconds and gets launched in a random direction. the collision is broken, there's one song that i made in beepbox at 4am, and my roommate beat it in three minutes.\n\nbut like. i made a thing. with a start screen and an end screen. i've been 'working on' a metroidvania for two years and it has zero levels. finishing something tiny and dumb felt better than anything i've done on that project. anyway if you've been scared to try a jam, do it, the bar is on the floor and that's the point"),
    "p2": ("pixelmoth_", "college", "2020-02-12", "how do you deal with group projects where one person just vanishes?",
           "sophomore, software engineering class, four person group. one guy came to the first meeting, said he'd do the database part, and has not answered a single message in three weeks. the project is due in nine days. the syllabus says we 'should resolve conflicts internally' which is not super helpful.\n\ni don't want to be the person who snitches but i also don't want my grade tanked because i was scared of being awkward. me and the other two split his part and we're kind of drowning. has anyone actually told a professor and had it go okay? what did you even say?"),
    "p3": ("pixelmoth_", "indiegaming", "2020-06-05", "games that made you feel something with almost no words?",
           "been stuck at home since march and i've been going through my backlog. just finished a short game where you're a lighthouse keeper and the only 'dialogue' is the lamp blinking at ships. i was not prepared to get emotional about a lamp.\n\nlooking for more like that, games where the story is all in the visuals or the sound or the mechanics. i've already played journey, inside, gris and a short hike (which technically has words but they're so short i'm counting it). bonus points if it's small and made by one or two people, i'm trying to study how they pull it off for my own stuff."),
    "d1": ("sleepless_in_duluth", "daddit", "2019-11-20", "Week three. Nobody warned me about the hiccups.",
           "First kid, a son, born the first of November. Everybody warned me about the diapers and the sleep. I was ready for that, or thought I was. Nobody told me that a seven pound person can get hiccups for twenty minutes straight and look at you like you're supposed to fix it.\n\nMy wife Kayla is doing most of the nights because she's feeding him, and I take the 5am shift so she can sleep a solid block. I do HVAC and it's furnace season up here so I'm out the door at 7:15 either way. Running on gas station coffee and pure love. Any other dads figure out a rhythm that doesn't wreck both parents?"),
    "d2": ("sleepless_in_duluth", "daddit", "2020-01-08", "Went back to work full time and sat in my van in the parking lot for ten minutes",
           "Paternity leave ended Monday. I had it easy compared to a lot of guys, my company gave me six weeks. But Monday morning I got to the first service call, parked, and just sat there. Eli had grabbed my finger on the way out the door and it got me.\n\nIt's minus 18 here and I'm crawling around in basements fixing heat exchangers and all I can think about is whether he's napping. Kayla sends me pictures at lunch. The guys at the shop have been good about it, one of the older techs brought me a thermos of his wife's wild rice soup. Does this get easier or do you just get used to it?"),
    "d3": ("sleepless_in_duluth", "Parenting", "2020-03-02", "Daycare waitlists here are 14 months. What did you actually do?",
           "We put Eli on four waitlists when Kayla was six months pregnant, which we thought was early. Turns out it was not. The soonest opening anyone can give us is next January and Kayla's leave ends in May. Her mom can help two days a week. My parents are in Bemidji, so that's out.\n\nWe've looked at in-home providers but the two we liked are full too. I'm wondering if people did a nanny share, or one parent went part time, or what. I could maybe do four tens if my boss agrees. Would really like to hear how other families in smaller cities handled this."),
    "s1": ("sourdough_sasha", "Breadit", "2019-03-05", "Starter log: 30 days of feeding a starter in a 62 degree apartment",
           "My apartment runs cold in winter (landlord controls the heat, don't ask) so my starter took forever to get going. For the spreadsheet people, here's what I tracked:\n\n- Days 1-6: lots of bubbles, then nothing. Classic false start.\n- Days 7-14: switched to 50/50 whole wheat and bread flour, moved the jar into the oven with the light on. Rise went from 10% to about 60%.\n- Days 15-30: doubling reliably in 7 hours. Smells like yogurt and green apples.\n\nLesson: temperature matters more than any flour ratio. I named her Ledger because I am an accountant and have no imagination."),
    "s2": ("sourdough_sasha", "personalfinance", "2020-04-02", "CPA here: the most common filing mistake I see isn't what you think",
           "It's not forgetting deductions. It's people with a side gig who don't realize they owe self-employment tax until April and then panic. If you made more than $400 driving, delivering, tutoring, selling crafts, whatever, you owe SE tax on the profit, roughly 15.3%.\n\nThree things that would save most of my clients grief:\n1. Open a separate checking account for side income. Even a free one.\n2. Move 25-30% of every payment into savings the day it lands.\n3. Keep a mileage log. An app, a notebook, anything. Reconstructing it in April is miserable.\n\nEDIT: yes, the deadline moved to July 15 this year. Still file early if you're getting a refund."),
    "s3": ("sourdough_sasha", "Breadit", "2019-08-17", "Finally got the open crumb everyone chases and I'm not sure I like it",
           "Six months of chasing big holes and this weekend it happened: 80% hydration, long cold retard, lamination, the whole circus. The crumb photo looks like lace. I was thrilled for about ten minutes.\n\nThen I tried to make a sandwich. The mustard went straight through. The tomato slid out of a hole the size of a golf ball. My partner politely said it was 'very artisan' and went back to the grocery store loaf.\n\nSo I'm dialing it back to 72% for weekday bread and saving the lace for showing off. Anyone else decide the Instagram crumb isn't actually the goal?"),
    "t1": ("theo_looks_up", "astronomy", "2019-10-04", "Showed 90 seventh graders Saturn through my 6-inch Dobsonian",
           "I teach middle school science in a small town in New Mexico. Every fall I do a night where families can come to the football field and look through my telescope. This year we had about 90 kids plus parents, which is a record.\n\nSaturn was low in the southwest right after sunset and the seeing was decent. The best part is always the reaction. Kids who have been too cool for everything since August suddenly yell 'THERE'S RINGS' and run back to the line to look again. One girl asked if it was a sticker on the lens. Had a parent ask where to buy a scope, so I pointed her to the library loaner program in Socorro."),
    "t2": ("theo_looks_up", "Teachers", "2020-04-20", "Remote science labs when a third of my class has no internet at home",
           "Our district went to packets plus online for the rest of the year. About a third of my students live outside town where there's no broadband, and several families share one phone. So the 'virtual lab' everyone is sending me links to is useless for them.\n\nWhat I'm trying instead: kitchen-table experiments that need only stuff most houses have. Density with salt water and an egg. Shadow length tracked with a stick every hour. Seed germination in a plastic bag taped to a window. Kids text me a photo or just write it on the packet.\n\nIt's not the same as the lab room but the photos I've gotten back are great. If anyone has more no-internet ideas, please share."),
    "t3": ("theo_looks_up", "astronomy", "2020-07-19", "Comet NEOWISE from a dirt road outside Socorro",
           "Drove out about 20 miles after dinner with my two kids and a lawn chair. Once the twilight faded it was right there under the Big Dipper, naked eye, with the tail clearly curved. Binoculars made it ridiculous, you could see the faint blue ion tail separate from the dusty one.\n\nMy nine-year-old asked if it would come back and I had to explain it won't be back for something like 6,800 years. She thought about that for a while and then said 'so we're the only ones who get to see it.' Not technically true but I'll take it. Best hour of a very strange year."),
    "q1": ("stacks_and_static", "books", "2019-07-09", "Small-town librarian here: what people actually check out",
           "I run a two-person branch in a farming town of about 3,000 people, and since every bestseller list tells you what people buy, I thought some of you might like to know what they borrow.\n\nLarge-print westerns, by a mile; there is a group of retired ranchers who trade them like baseball cards. Car repair manuals, which come back with grease on every page. Cozy mysteries with a cat on the cover. Seed catalogs and canning books in spring. And, to my ongoing delight, a teenage boy who has worked his way through every Asimov we own and now asks me for 'the weird ones' (I have been giving him Philip K. Dick, carefully)."),
    "q2": ("stacks_and_static", "printSF", "2019-12-01", "Finally read The Left Hand of Darkness and I can't stop thinking about the ice crossing",
           "I'm embarrassed it took me this long, given that I've shelved it probably a hundred times. I expected a novel of ideas about gender, and it is that, but what stuck with me was the long crossing of the glacier: two people pulling a sled across nothing, counting rations, slowly learning to trust each other.\n\nIt reminded me of reading Tolkien at twelve, that sense of a journey as something that changes you by the inch. I've been pressing it on anyone who stands still long enough at the circulation desk. Which older SF would you pair with it? I'm thinking of doing a winter reading display of 'cold books'."),
    "q3": ("stacks_and_static", "Libraries", "2020-02-25", "Our branch is getting a makerspace and I have complicated feelings",
           "The county approved a grant for a 3D printer, a laser cutter, and a sewing machine, and they're going in the room where the local history collection used to be. The history collection is being moved to the main branch forty minutes away.\n\nI understand the logic, I really do: the printer will bring in kids who haven't set foot here in years, and the history room got maybe five visitors a month. But two of those five were old women who came every single week to look up their families, and I don't think they'll drive forty minutes. I suppose I'm asking how other small libraries balanced the shiny new thing against the quiet old thing."),
    "w1": ("dovetail_dev", "woodworking", "2019-05-06", "First hand-cut dovetails after three months. Gaps you could drive a truck through.",
           "Day job is backend engineering, twelve years, mostly Java and on-call pagers. Started hand-tool woodworking in February because I needed something where the feedback loop is physical and there's no Jira.\n\nThis is my first through-dovetail box, poplar, cut with a cheap Japanese pull saw and a set of chisels from a garage sale. The tails are okay. The pins have gaps on every side and one of them split out when I did the test fit. I glued it anyway and filled the gaps with sawdust and glue, which I'm told is a time-honored way to lie. What should I be practicing first: sawing to a line, or chopping?"),
    "w2": ("dovetail_dev", "cscareerquestions", "2019-09-20", "Senior dev, burnt out, spending evenings in a garage shop. Anyone actually make a shift?",
           "Twelve years in, senior title, decent money, and I dread every standup. The garage is the only place where I feel like I'm making something that exists. I'm not naive enough to think furniture making pays like software does.\n\nI'm curious about the middle options people have actually tried: going down to four days a week, moving to a slower company, contracting six months a year. Did anyone negotiate a 32-hour week at a normal tech company and get it? Did it fix the burnout or just make it smaller? I have savings and no kids, so I'm in a better spot than most, but I'd like to not blow up my life on a whim."),
    "w3": ("dovetail_dev", "woodworking", "2020-01-26", "Built a step stool for my niece and learned more than from any video",
           "My sister asked for a step stool so my four-year-old niece can reach the bathroom sink. Simple project, I thought. Splayed legs, a top with her name carved in it, done in a weekend.\n\nIt took three weekends. The compound angles on the legs made me make a jig out of scrap, which I resisted for a full day because I wanted to just cut them 'carefully'. The jig took an hour and made the rest of the cuts trivial. There's probably a lesson there about my day job too. Finished it with three coats of oil-varnish and she immediately used it to climb onto the kitchen counter, which was not the intended use case."),
    "m1": ("marathon_maybe", "loseit", "2019-06-01", "Down 52 lbs. The scale is less interesting than the stairs.",
           "44M, 5'10\", started at 281 last October. I dispatch trucks overnight, which means sitting for ten hours, vending machine dinners and a lot of energy drinks. My doctor used the word 'prediabetic' in January and that scared me more than the number did.\n\nNo fancy diet. I count calories on an app, I bring food from home, and I walk for 40 minutes before every shift. The scale moves slowly and some weeks it goes up for no reason. What actually keeps me going is that I can climb the three flights to our office without stopping on the landing and pretending to check my phone. Next goal is to jog a whole mile."),
    "m2": ("marathon_maybe", "running", "2019-10-13", "First 10K at 44, finished second-to-last and grinning",
           "A year ago I couldn't jog to the mailbox. This morning I ran a whole 10K in 1:14:52. There was a woman pushing a double stroller who passed me at mile 4 and I finished right behind a guy in a banana costume who was walking.\n\nDon't care. I ran every step except the water stations. My daughter made a sign that said 'GO DAD, YOU'RE DOING OKAY' which I think is the most honest race sign ever made. Started couch to 5K in April after losing the first 50 lbs. If you're heavy and thinking about starting, the back of the pack is the friendliest place in the whole race."),
    "m3": ("marathon_maybe", "running", "2020-01-30", "Shin splints again. What actually worked for you?",
           "Third time since summer. I build up to about 18 miles a week and then my left shin starts aching on the inside, and I back off, and then I'm starting over. I'm still around 225 lbs so I know I'm putting more load on my legs than most.\n\nI've tried new shoes from a running store, icing, and the calf raises my cousin swore by. What I haven't tried is actually seeing anyone, because the dispatch job doesn't give me much daytime. Is this a 'go see a physical therapist' situation or do most people just build slower? Trying to get to a half marathon in October without wrecking myself."),
    "k1": ("kettle_and_kin", "japanlife", "2019-08-29", "Three years teaching English in Gunma: things I wish I'd known",
           "Grew up in Birmingham (the UK one), Jamaican family, came over on a teaching contract in 2016 and stayed. A few things nobody told me:\n\nThe staff room is where all the real communication happens, so bring omiyage back from every trip even if it's just a box of biscuits. Winters in old buildings are properly cold and there is no central heating; buy a kotatsu and accept your fate. Rural people will stare at you, and most of it is curiosity rather than anything worse. Learn to read the garbage sorting calendar before anything else. And the local supermarket will never have scotch bonnets, so make friends with the Brazilian grocery an hour away."),
    "k2": ("kettle_and_kin", "Cooking", "2019-12-14", "Making my nan's oxtail with only Japanese supermarket ingredients",
           "Christmas away from family again, so I wanted my nan's oxtail, which is the taste of every family gathering I've ever been to. Problem: I live in rural Japan. Oxtail I found at a yakiniku butcher, frozen and pricey. Allspice came from a tiny jar in the import aisle. No scotch bonnets, so I used dried habanero from the Brazilian shop and it was close enough.\n\nThe surprise was the butter beans. Couldn't get them, so I used Japanese broad beans and honestly they might be better. Browned the oxtail hard, long braise in the rice cooker's slow mode overnight. My colleagues ate three bowls each and asked for it at the end-of-year party."),
    "k3": ("kettle_and_kin", "Cooking", "2020-05-11", "The cheapest kitchen upgrade I've made: using the rice cooker timer properly",
           "Everyone posts their fancy knives. Mine is boring: I finally learned to use the timer on my rice cooker. I set it before bed and wake up to hot rice, or set it at 7am and come home from school to rice ready at 6.\n\nDuring the school closures I leaned on it even more. It does porridge, steamed sweet potatoes, even a decent rice and peas if you put the coconut milk in at the start and don't open the lid. Total investment was reading the manual with a translation app for twenty minutes. Anyone else have an appliance feature they ignored for years?"),
    # --- short user: question-only submission (noise) ---
    "x1": ("curious_kat_77", "Breadit", "2019-04-11", "Why does my starter smell like nail polish?", ""),
}

# key -> (author, target submission key, date, body)
REDDIT_COMMENTS = {
    # night_shift_fern
    "c_f_d1": ("night_shift_fern", "d1", "2019-11-21", "ICU nurse here, not peds, but I've held plenty of hiccuping babies during family visits. Newborn hiccups are incredibly common and almost never bother the baby as much as they bother the parents. Sometimes a little burp break mid-feed helps. If he's happy and eating, you're doing fine. Sleep when you can, seriously."),
    "c_f_m3": ("night_shift_fern", "m3", "2020-01-31", "Not a runner, but I'm on my feet for twelve hours a night and I had shin pain that turned out to be a stress reaction, not shin splints. If it's one specific spot that hurts when you press it with a finger, please get it looked at before you keep pushing through. A diffuse ache along the inside of the shin is a different story."),
    "c_f_q1": ("night_shift_fern", "q1", "2019-07-10", "This made me smile. I'm an ICU nurse on nights and my tiny local library is basically how I survive. I check out audiobooks by the armful and listen on the drive home at 7:30 in the morning. Mysteries mostly, and anything with a garden in it. Our librarian started setting aside the new Louise Penny for me, which was the nicest thing anyone did for me all year."),
    "c_f_k2": ("night_shift_fern", "k2", "2019-12-15", "I grew scotch bonnets for the first time this summer and had no idea what to do with all of them, so this post is perfect timing. I froze a big bag, so they're waiting. Oxtail at our butcher has gotten ridiculously expensive too, I think because everyone discovered it. Saving this for my next stretch of four days off."),
    # greasy_spokes_bill
    "c_b_w1": ("greasy_spokes_bill", "w1", "2019-05-07", "Gaps are normal at three months. In my trade we'd say you are cutting on the line when you should be cutting to the waste side of it. Mark with a knife, not a pencil, and split the line. Also check your saw is not drifting. A saw with too much set will wander on you no matter how careful you are. Keep going."),
    "c_b_w3": ("greasy_spokes_bill", "w3", "2020-01-27", "Good work. The thing nobody says about handwork is that a jig costs you an afternoon and saves you a hundred mistakes. Sounds like you figured that out with the splayed legs. My granddaughter still uses a stool I made for her mother in 1979. Build it heavy and it will outlive both of us."),
    "c_b_t1": ("greasy_spokes_bill", "t1", "2019-10-05", "Back in the 70s a fellow from the shop and I ground a 6 inch mirror by hand on a barrel in his basement. Took all winter. The first time I saw the rings through it I about fell off the step ladder. Good on you for hauling the scope out for those kids. Some of them will remember that the rest of their lives."),
    "c_b_m2": ("greasy_spokes_bill", "m2", "2019-10-14", "I'm 68 and ride about 40 miles a week, mostly on bikes I fixed up myself, so I don't run. But second-to-last is still ahead of everybody sitting on the couch. My late wife started walking at 50 and did a half marathon at 57. Don't let the young ones in the neon shoes get to you."),
    "c_b_q1": ("greasy_spokes_bill", "q1", "2019-07-11", "The Chilton and Haynes manuals at our library have grease on every page and about half of it is mine. Glad they still buy them. Can't get that on a phone. The interlibrary loan lady also found me a 1960s Sturmey-Archer service manual from a college two states away. Librarians are underrated."),
    # pixelmoth_
    "c_p_w2": ("pixelmoth_", "w2", "2019-09-21", "not a senior anything, i'm a sophomore cs major, but reading this was weirdly comforting? everyone in my classes acts like the only goal is getting into a big tech company and grinding forever. it's nice to hear someone say you can have a job that pays the bills and then go make sawdust in a garage. hope the shop keeps helping"),
    "c_p_q2": ("pixelmoth_", "q2", "2019-12-02", "okay this is making me want to read it. i only know le guin from earthsea, which my high school library had. the way you describe the ice crossing sounds a lot like why i like small exploration games, where it's mostly two characters surviving and slowly figuring each other out. adding it to my winter break list"),
    "c_p_t1": ("pixelmoth_", "t1", "2019-10-06", "this is the most wholesome thing i've read all week. i saw saturn through a telescope once at a science museum when i was 11 and i honestly think that's part of why i love space games so much now. outer wilds made me cry for a similar reason, that feeling of something huge and real and far away. your students are lucky"),
    "c_p_k1": ("pixelmoth_", "k1", "2019-08-30", "saving this. i've been low key thinking about teaching in japan after i graduate since i've been learning japanese for like 400 days (on an app, so it barely counts lol). the part about the staff room and the winters with no central heating is stuff nobody ever mentions in the youtube vlogs"),
    "c_p_s2": ("pixelmoth_", "s2", "2020-04-03", "college student here, this is genuinely helpful. i had a part time job at the campus bookstore and didn't even know i was supposed to check whether my parents were claiming me before filing. my dad and i both claimed me last year and the irs sent a very scary letter. learned that one the hard way"),
    # sleepless_in_duluth
    "c_d_s2": ("sleepless_in_duluth", "s2", "2020-04-04", "New dad here and this thread is timely. First year filing with a kid and I had no idea about the dependent care FSA until a guy at work mentioned it. Also I do small side jobs fixing furnaces for neighbors, cash, and I have never once kept a mileage log. Guess I'm starting a notebook in the van tomorrow."),
    "c_d_t2": ("sleepless_in_duluth", "t2", "2020-04-21", "My wife teaches second grade and she's been doing the exact same thing, packets with stuff you can do at a kitchen table. She had kids measure every doorway in their house with a piece of string. Our son is five months old so he mostly supervised from the bouncer. Teachers are carrying a lot right now, thank you."),
    "c_d_k3": ("sleepless_in_duluth", "k3", "2020-05-12", "With a six month old this is the kind of tip I need. We have a rice cooker we got as a wedding present that has been in the cupboard for three years. I just looked and it has a timer AND a porridge setting. Kayla says if I figure out oatmeal on a timer she'll marry me again."),
    "c_d_w3": ("sleepless_in_duluth", "w3", "2020-01-28", "This is great. My son is only three months old but I already want to build him one of these for when he's old enough to reach the sink. I have zero woodworking experience, I fix furnaces for a living, so sheet metal is more my speed. Is a step stool a reasonable first project or am I going to end up with firewood?"),
    "c_d_q3": ("sleepless_in_duluth", "q3", "2020-02-26", "Our library's baby story time is the only thing that has gotten us out of the house this winter. Eli just stares at the other babies like they owe him money. I get wanting the new equipment, but I hope they keep the quiet stuff too, some of those older folks at story time seem to be there just for the company."),
    # sourdough_sasha
    "c_s_d3": ("sourdough_sasha", "d3", "2020-03-03", "CPA here, not a childcare expert, but one practical note since you're crunching numbers: if either employer offers a dependent care FSA, you can set aside up to $5,000 pre-tax for daycare or a nanny share. A lot of families I see don't use it because nobody told them. It won't fix the waitlist, but it takes the sting out of the bill."),
    "c_s_k2": ("sourdough_sasha", "k2", "2019-12-16", "This is the most comforting post I've read all week. I love that you used the rice cooker slow mode overnight, I've been looking for an excuse to use mine for something other than rice. Question for the baker in me: do you serve it with anything bread-like? I'm thinking a soft roll to mop it up."),
    "c_s_k3": ("sourdough_sasha", "k3", "2020-05-12", "Mine is the proof setting on my oven, which I ignored for four years and which turns out to hold a perfect 80 degrees for dough. I could have saved my cold-apartment starter a lot of suffering. Going to try your rice and peas trick this weekend, timers are the closest thing to automation my kitchen has."),
    "c_s_w2": ("sourdough_sasha", "w2", "2019-09-21", "From the numbers side: before you cut hours, figure out your actual monthly burn for three months, not the budget you think you have. Then see what a 20% pay cut does to your savings rate. People overestimate how much a four-day week costs and underestimate how much burnout costs them. Both are real."),
    "c_s_p2": ("sourdough_sasha", "p2", "2020-02-13", "I TA'd an accounting course in grad school and I promise professors would much rather hear about this at week three than at the deadline. Keep it factual: dates of messages, what was assigned, what you've covered. No editorializing. Most instructors have seen it a hundred times and have a process for it."),
    # theo_looks_up
    "c_t_p3": ("theo_looks_up", "p3", "2020-06-06", "Science teacher here, and I've used a couple of wordless games in class because they work for kids who are still learning English. We played one about a paper airplane in a storm and had the class write what they thought the story was. I got about thirty different stories. Games that trust the player like that are a great teaching tool."),
    "c_t_q2": ("theo_looks_up", "q2", "2019-12-03", "That ice crossing is my favorite section of any science fiction novel. If you're building a display of cold books, I'd add Kim Stanley Robinson's Antarctica, and for the younger readers, Julie of the Wolves. I read Le Guin out loud to my eighth graders every year, the chapter on the Handdara, and at least one kid always asks to borrow it."),
    "c_t_d2": ("theo_looks_up", "d2", "2020-01-09", "It gets easier and it also doesn't, if that makes sense. My youngest is nine now and I still sometimes sit in the school parking lot for a minute before I go in. Mostly you get used to carrying them around in your head all day. The soup guy sounds like a good man. Keep him."),
    "c_t_b1": ("theo_looks_up", "b1", "2019-04-03", "Beautiful work. I run an after-school bike club where kids fix donated bikes and get to keep one when they've rebuilt five. Repacking cup-and-cone bearings is the thing that separates the kids who are in it from the ones who aren't. Any tips for teaching a twelve-year-old how tight is tight enough?"),
    "c_t_k1": ("theo_looks_up", "k1", "2019-08-31", "The staff room point is true everywhere, I think. In my school it's the copy room. Whoever brings green chile breakfast burritos on Friday runs the building. Good luck with your fourth year, and I'd love to hear how science is taught in Japanese junior high schools if you ever see it."),
    # stacks_and_static
    "c_q_t3": ("stacks_and_static", "t3", "2020-07-20", "I love 'so we're the only ones who get to see it.' Our branch started lending a small telescope in February, right before everything closed, and it finally went out again in July. The family who borrowed it brought it back with a little hand-drawn picture of the comet taped to the case, which is now pinned above my desk."),
    "c_q_d3": ("stacks_and_static", "d3", "2020-03-04", "Not a parent, but I run a small library and I see this in our community constantly. Several of our families formed an informal swap where three parents each take one day a week and the others cover the rest. It seems to work best when everyone writes the arrangement down, even casually. I hope something opens up for you soon."),
    "c_q_f3": ("stacks_and_static", "f3", "2019-09-04", "My mother was a nurse for thirty-one years, mostly on nights, and she used to say the same thing almost word for word: the ones who don't ask are the ones to watch. She kept a little mental list too. Reading this felt like hearing her voice again, so thank you for the extra walk-bys you do."),
    "c_q_p3": ("stacks_and_static", "p3", "2020-06-07", "I'm a librarian, not much of a gamer, but the lighthouse one sounds like the kind of story I'd fall for. In books the equivalent is the wordless picture book, and some of the best, like Shaun Tan's The Arrival, do exactly what you describe: the story lives in the pictures and you fill in the rest yourself."),
    "c_q_w3": ("stacks_and_static", "w3", "2020-01-28", "The bit about the jig made me laugh, because I spent a whole afternoon last month refusing to build a simple catalog template and instead typing every record 'carefully.' There really is a lesson in there about every job. Your niece will be telling people about that stool when she's forty, I suspect."),
    # dovetail_dev
    "c_w_b3": ("dovetail_dev", "b3", "2019-11-10", "This is exactly the kind of tool-making I want to get better at. I have a garage full of hand tools and zero metalworking gear, so my jigs are all scrap plywood and screws. Would love the dimensions if you do write them up. Also reading 'not complicated' from someone with a lathe is always a fun experience."),
    "c_w_b1": ("dovetail_dev", "b1", "2019-04-04", "Leaving the paint alone is the right call. I do software for a living and there's a similar instinct to rewrite everything from scratch, when the old thing mostly needs to be cleaned and understood. Cup-and-cone bearings sound like the kind of job I would love and completely ruin the first time."),
    "c_w_p1": ("dovetail_dev", "p1", "2019-10-29", "Twelve years as a professional developer and I can confirm the most useful thing you can learn is how to finish something small. Most of the projects I'm proud of at work are the boring ones that shipped. A sneezing platformer with a start and end screen is more done than most things in my side-project folder."),
    "c_w_s1": ("dovetail_dev", "s1", "2019-03-07", "The spreadsheet log is very relatable. I treat my starter like a flaky service in production: track the metrics, change one variable at a time, resist the urge to restart it when it's just having a bad day. The oven-with-the-light-on trick saved mine too. Ledger is a great name, for the record."),
    "c_w_k3": ("dovetail_dev", "k3", "2020-05-13", "Mine was the delay-start on the dishwasher, which sounds dull but it means it runs at 2am when power is cheaper and I don't hear it from the shop. I'm going to go dig out the manual for my rice cooker now, because I suspect I've been ignoring half of its buttons for years."),
    # marathon_maybe
    "c_m_f1": ("marathon_maybe", "f1", "2019-02-11", "Overnight truck dispatcher here, been on nights nine years, and this is the best advice nobody takes. I used to flip back on weekends to see my kids and felt hungover every Monday. Keeping the same hours and just having 'dinner' with them at breakfast time changed everything for me. Doctor said the same."),
    "c_m_d2": ("marathon_maybe", "d2", "2020-01-09", "My daughter is fourteen now and I still remember the first night I went back to work after she was born. I dispatch trucks overnight so I'd leave when she was going down. It does get easier, and one day she'll make you a sign at the finish line of a race that says you're doing okay. Hang in there."),
    "c_m_b2": ("marathon_maybe", "b2", "2019-05-19", "My dad ran a Bridgeport for thirty years and number 4 is exactly what he'd tell you. He can't hear the TV unless it's at 40. He also had the notebooks, we found them in his toolbox, page after page of numbers I can't read. Thanks for writing this, it made me call him today."),
    "c_m_s3": ("marathon_maybe", "s3", "2019-08-18", "As someone who is trying to eat more real food and less vending machine stuff, the sandwich bread is the loaf I care about. My wife started baking this year and her tighter loaves are the best thing in my lunch bag. Lace bread sounds fancy but I'd want mine to hold a turkey sandwich through a ten hour shift."),
    "c_m_t1": ("marathon_maybe", "t1", "2019-10-05", "This made my morning. My daughter's science teacher did something like this last year and she talked about it for weeks. She got a cheap telescope for her birthday because of it. Teachers who haul their own equipment out on a Friday night deserve more than they get paid, that's for sure."),
    # kettle_and_kin
    "c_k_s1": ("kettle_and_kin", "s1", "2019-03-06", "Mine had the opposite problem: my flat in Gunma is freezing in winter and then about 90% humidity in June, and the starter went from sluggish to climbing out of the jar over about a week. I keep it in the fridge now and bake on weekends. Naming it after your job is brilliant, mine is called Nan."),
    "c_k_s3": ("kettle_and_kin", "s3", "2019-08-18", "Ha, this is the eternal problem with Japanese bakery bread too, it's so soft and fluffy that it can't survive a proper sandwich. I'd take your 72% loaf for a bacon butty any day. The lace one sounds gorgeous with butter and nothing else, though, which is a perfectly good use for a loaf."),
    "c_k_f2": ("kettle_and_kin", "f2", "2019-06-23", "Gardening on odd hours is the only way I get to do it during term time. I grow shiso, cherry tomatoes and a very sad chilli plant on my balcony and water them at 6am before school. Slugs here love the shiso. A neighbour told me to put crushed eggshells around the pots and it seems to help."),
    "c_k_q2": ("kettle_and_kin", "q2", "2019-12-02", "What a lovely idea for a display. I read Left Hand of Darkness during my first winter in Gunma, sat under the kotatsu with the windows iced over, and it felt almost too appropriate. Pair it with The Snow Queen by Joan Vinge if your library has it, it's long but it's properly cold."),
    "c_k_m2": ("kettle_and_kin", "m2", "2019-10-14", "That sign is the best thing I've read all week. I did my first 10K in Takasaki last spring and an elderly man in a tracksuit overtook me with perfect form at about the 7K mark, gave me a little nod and disappeared. The back of the pack is the friendliest place in any race, that's the truth."),
    # --- short users / noise ---
    "c_dan_b1": ("drive_by_dan", "b1", "2019-04-05", "That Suntour swap is a smart move, those old Huret derailleurs were beautiful but they bend if you look at them. I had a 70s Peugeot with one and it never shifted right. Great save from the curb, most of these end up at the scrapyard and it's a shame every time."),
    "c_dan_m2": ("drive_by_dan", "m2", "2019-10-15", "Congrats. Finishing a 10K after losing that kind of weight is a bigger deal than any time on a clock. The banana costume guy shows up at every race I've ever run too, I'm starting to think it's the same guy travelling the country just to demoralize people."),
    "c_deleted_d1": ("[deleted]", "d1", "2019-11-22", "The hiccups thing happened with both of mine. My mother-in-law swore by a little gripe water but honestly they just grow out of it. The part nobody tells you is how much you'll miss the tiny newborn stage once it's over, even the hiccups. Hang in there, dad."),
    "c_automod_k1": ("AutoModerator", "k1", "2019-08-29", "Hello! Please remember that questions about finding work in Japan, visas and moving here belong in the weekly thread. Discussion of life in Japan is welcome here. *I am a bot, and this action was performed automatically. Please contact the moderators of this subreddit if you have any questions or concerns.*"),
    "c_removed_p2": ("throwaway_8812", "p2", "2020-02-13", "[removed]"),
}

# non-top-level reply: key -> (author, parent comment key, date, body)
REDDIT_REPLIES = {
    "r_w_bill": ("dovetail_dev", "c_b_w1", "2019-05-08", "Knife wall plus splitting the line made a huge difference on my next practice board, thank you. I also checked the saw and it does drift to the left, so I'm going to try stoning the set on that side a little. Feels a lot like debugging: the problem was upstream of where I was looking."),
}

# =============================================================================================
# TWITTER (Sentiment140): handle -> list of (polarity, text), chronological
# =============================================================================================
#   sunny_daze88      17, high-school senior in San Diego: prom, graduation, froyo summer job
#   grillmaster_kev   42, dad in Worcester MA: smoker BBQ, Red Sox, coaching T-ball
#   jen_codes         28, freelance web developer in Austin: Rails, coffee, clients
#   moonlitvet        vet tech in Ohio: animals, long shifts, credential exam
#   tara_in_transit   flight attendant based at O'Hare: layovers, delays, passengers
#   blue_guitar_mike  bar musician in Nashville: tips, songwriting, broke but happy
#   lilah_bakes       owns a small cupcake shop in Portland: early mornings, flavours, costs
#   stats_nerd_raj    econometrics PhD student in Madison: regressions, cricket, advisor
# Short users: deals4u_now (ad), lurker_lou.
TWEETS = {
    "sunny_daze88": [
        (0, "ugh AP calc test tomorrow and i have learned literally nothing since february. pray for me"),
        (4, "@kaylee_b omg yes we HAVE to get our nails done before prom, saturday?? &lt;3"),
        (4, "just found out i got into SDSU!!! crying in the school parking lot rn"),
        (4, "my mom keeps calling my prom dress &quot;a little much&quot; which means it's perfect"),
        (4, "RT @kaylee_b: prom pics are up!!! sunny you look AMAZING in that dress"),
        (0, "sunburned on only one side bc i fell asleep at the beach reading. two tone lobster"),
        (0, "first day at the froyo place. i smell like mango and already dropped a whole tray of toppings"),
        (4, "GRADUATED!!! my cap flew into the crowd and some random dad caught it. class of 09 baby"),
        (0, "everyone is leaving for summer trips and i'm stuck refilling gummy bears until august lol"),
    ],
    "grillmaster_kev": [
        (0, "Smoker going since 5am. Pork shoulder sitting at 160 and stalling like the Sox bullpen"),
        (4, "Coached my daughter's T-ball game. Final score unknown. Nobody knew, including the umpire"),
        (0, "Papelbon you are killing me. Two on, nobody out, ninth inning. Again."),
        (4, "Brisket came out perfect. Bark like a tree. Neighbors suddenly very friendly"),
        (4, "@bostonbbqguy what wood are you using for ribs? Been doing apple but thinking cherry"),
        (0, "Rain all weekend. Smoker sits under a tarp looking at me like a sad dog"),
        (4, "Fenway tonight with the boys. Beer is $7.25 &amp; worth every penny for this view"),
        (0, "Lawn mower died mid-stripe. Half my yard looks like a golf course, half like a hayfield"),
        (4, "Youkilis walkoff!! Just scared the dog half to death yelling at the TV"),
    ],
    "jen_codes": [
        (4, "Trying this twitter thing because everyone at work won't stop talking about it. hello world."),
        (0, "Spent four hours on a bug that was a missing colon in a YAML file. I need a hobby. Or a nap."),
        (4, "Rails 2.3 is out and I am weirdly excited about nested forms. This is my life now"),
        (0, "Coffee shop wifi is down. Am I supposed to just... think? With my brain?"),
        (4, "Freelancing full time now! Need a site? email jen.codes.atx@example.com or call 512-555-0147"),
        (4, "@devon_r the answer is always caching. Unless the answer is not caching. Then it's DNS"),
        (0, "Client wants the logo bigger. Then smaller. Then &quot;more pop&quot;. I bill hourly, so, sure"),
        (0, "Austin in June: 101 degrees, laptop fan sounds like a jet engine, and I'm out of iced coffee"),
        (4, "Pushed my first gem to github. 3 whole people are watching it. Famous http://github.com/jencodes"),
    ],
    "moonlitvet": [
        (4, "Twelve-hour shift. Three parvo puppies and one of them finally ate this morning. Small wins."),
        (0, "Please, I am begging you, do not give your dog grapes. Today was a very long day."),
        (4, "A 17 year old cat bit me today and honestly? Respect. She has earned it."),
        (0, "Helped a family say goodbye to their old lab this afternoon. Came home and hugged my dogs for an hour"),
        (4, "@ohio_pawsrescue we have two kittens ready for foster if you have room! bottle babies, very loud"),
        (4, "Someone brought in a bearded dragon wearing a tiny cowboy hat. Best patient of the week"),
        (0, "Scrubs covered in fur, hair covered in fur, lunch covered in fur. Occupational hazard"),
        (4, "Passed my state credentialing exam!!! RVT after my name now. Thanks to everyone who quizzed me"),
        (0, "Fourth of July is coming. Fireworks terrify so many dogs, keep them inside &amp; microchipped"),
    ],
    "tara_in_transit": [
        (0, "3 cities in 14 hours and I still don't know what day it is. Denver layover, room service time"),
        (0, "Passenger asked if we could fly faster because he's late. Sir, I will go talk to the pilot right now"),
        (4, "Sunrise over Lake Michigan on approach this morning. Never gets old. Never."),
        (4, "@jetlagjess are you on the SFO turn tomorrow? I'll bring the good snacks"),
        (0, "Delayed 4 hours in Newark. The gate agent and I have bonded. We are family now."),
        (4, "Finally had a day off and spent it sleeping 11 hours. Best vacation ever"),
        (0, "Crew meal tonight was a sad sandwich and half a banana. Such a glamorous life"),
        (4, "Bidding for July came out and I got the Honolulu trips!!! &lt;3 &lt;3"),
        (4, "Kid on my flight drew me a picture of the plane with me standing on the wing. Going on the fridge"),
    ],
    "blue_guitar_mike": [
        (0, "Played 3 hours on Broadway for tips. Made $41 and someone requested Freebird six times"),
        (4, "New song's almost done. It's about a truck, but a sad truck. Very Nashville of me"),
        (4, "Broke a string mid-solo tonight and kept going on five. Nobody noticed. Or they were all drunk"),
        (0, "Rent's due and my guitar is the only thing I own worth anything. Not selling it. Ramen week"),
        (4, "@songbird_nell thanks for the harmony last night, that second verse gave me chills"),
        (4, "Writers round at the Bluebird on tuesday!! Only took me two years of asking"),
        (0, "Van won't start. Gig in Murfreesboro in 3 hrs. Anybody got jumper cables &amp; time"),
        (4, "Recorded a demo in my buddy's closet studio. Sounds like a closet. Still proud http://www.myspace.com/bluegtrmike"),
        (4, "Quiet Sunday. Coffee, porch, open tuning, nothing to prove to nobody"),
    ],
    "lilah_bakes": [
        (4, "Up at 4am for the Saturday rush. 300 cupcakes, one oven that runs hot, and a lot of optimism"),
        (0, "Tried a lavender honey frosting and it tastes like hand soap. Back to the drawing board."),
        (0, "Wedding order for 200 mini cupcakes this weekend. If you hear screaming, that's me"),
        (4, "@pdxfoodie thank you for the lovely write-up!! we sold out by noon today &lt;3"),
        (0, "Butter prices went up again. My accountant said a word I can't repeat here"),
        (4, "New flavor: salted caramel pretzel. It's so good I'm a little afraid of it"),
        (4, "Farmers market strawberries are finally here. Strawberry shortcake cupcakes all week!"),
        (0, "Walk-in fridge died overnight. Lost all the cream cheese frosting. Crying into a mixing bowl"),
        (4, "Hired my first employee today. I'm a boss?? I still eat frosting straight out of the bowl"),
    ],
    "stats_nerd_raj": [
        (0, "Regression finally converged after 3 days. Results are insignificant. Science!"),
        (4, "Advisor meeting went well?? Now I'm terrified because that never happens"),
        (4, "India won the T20 match, watched it at 3am on a pixelated stream &amp; have zero regrets"),
        (0, "Stata crashed and I hadn't saved my do-file since morning. Ctrl+S is a lifestyle now"),
        (0, "@econ_priya the conference reviewers want a robustness check on the robustness check"),
        (4, "Teaching stats section tomorrow. Undergrads think p&lt;0.05 is a magic spell. Maybe it is"),
        (4, "Madison in May is lovely. Wrote 2 pages by the lake and ate cheese curds. Very productive"),
        (0, "Chapter 2 draft sent to committee. Now I stare at my inbox like it's a slot machine"),
        (0, "Mom called to ask when I will be a real doctor. Explained econometrics. She hung up on me"),
    ],
    # --- short users / noise ---
    "deals4u_now": [
        (4, "Lose 20 lbs in 2 weeks!!! buy now at http://bit.ly/fastslim9 only $19.99, limited time offer"),
    ],
    "lurker_lou": [
        (0, "so this is twitter. still not sure what I'm supposed to say on here"),
        (4, "ok the @ thing makes sense now. hi @jen_codes, your gem is pretty neat"),
    ],
}

# =============================================================================================
# BLOGGER (Blog Authorship Corpus): filename stem -> list of (date "DD,Month,YYYY", text)
# =============================================================================================
BLOGS = {
    # student teacher in Columbus, Ohio; long-distance boyfriend; earnest, exclamation marks
    "3421876.female.24.Education.Libra": [
        ("08,September,2003", "First week of student teaching is DONE. I have a third grade class at an elementary school on the east side and my cooperating teacher, Mrs. Albright, has been teaching for twenty-two years and can silence twenty-six eight-year-olds by raising one eyebrow. I have been practicing the eyebrow in the bathroom mirror. It does not work yet. The kids call me Miss K because nobody can say my last name, which is fine by me."),
        ("21,September,2003", "Dan called last night from Seattle and we talked for two hours, which means my phone bill is going to be ugly. Long distance is hard. He sent me a box of chocolate-covered coffee beans and a mix CD with a lot of Death Cab on it, which I am listening to right now while I grade spelling tests. Somebody spelled 'because' as 'beecuz' and honestly I kind of love it."),
        ("15,October,2003", "Taught my first full lesson on my own today, on the water cycle. I made a little cloud out of cotton balls and a spray bottle and it went great for about nine minutes and then Marcus sprayed Jada and it turned into a riot. Mrs. Albright said afterward that I did well, and that every teacher has a spray bottle story. I cried a little in my car anyway. Then I bought a frosty and felt better."),
        ("02,November,2003", "My roommate Becca made a whole Thanksgiving dinner for six of us a few weeks early because half of us are going home and the other half are broke. I brought green bean casserole. It was the only thing I know how to make. We played Catchphrase until one in the morning. I am so tired and so happy. Lesson plans tomorrow, but not tonight."),
        ("12,December,2003", "Last day of my placement. The kids made me a card with every single one of their names on it, and Jada drew me as a princess holding a spray bottle. I'm keeping it forever. Mrs. Albright gave me a coffee mug that says 'Teach, Love, Inspire' and a long list of things to work on, which is exactly right. I have a lot to learn, but I am sure now that this is what I want to do."),
        ("19,January,2004", "Job applications. So many job applications. Every district wants a philosophy of education statement and mine keeps sounding like a greeting card. Dan says to just write about the spray bottle. Maybe he's right. I found a good list of interview questions here: urlLink http://www.teachersnet.org/interview-tips  and I am practicing my answers on Becca, who keeps asking me about classroom management in a British accent."),
        ("27,March,2004", "I got an interview! A second grade position in Westerville, which is close enough that I could keep this apartment. I wore my one suit and my hands shook the whole time, but the principal laughed at my spray bottle story, so I think that's a good sign? They said they'd call within two weeks. Now I get to refresh my email every five minutes until then."),
        ("14,May,2004", "I GOT THE JOB. Second grade, starting in August. I called my mom first and she screamed so loud the dog started barking. Then I called Dan, who is flying in for graduation next week, and he says he's looking at jobs in Columbus now, which I am trying very hard not to get too excited about. Today was a good day. I'm going to go buy a spray bottle."),
    ],
    # high school junior, bass player, skater, parents divorced; lowercase, sarcastic
    "1187345.male.17.Student.Gemini": [
        ("11,January,2004", "so my mom thinks i should 'journal about my feelings' because of the whole divorce thing so here i am, on the internet, where nobody will read it. feelings: tired. my dad's new apartment smells like carpet glue and he bought a futon that folds in half when you sit on the end. band practice tuesday. we still don't have a name."),
        ("24,January,2004", "we have a name now. it's Parking Lot Saints. tyler came up with it and nobody had anything better. we practiced in his garage for three hours and his neighbor called the cops, which i think officially makes us a real band. i got new strings for the bass and it sounds way less like a cardboard box now."),
        ("09,February,2004", "ate it so hard at the skatepark today trying to ollie the four stair. scraped up my whole left arm. my mom saw it and said 'this is why we can't have nice things' which doesn't even make sense but ok. going back saturday. i almost had it."),
        ("28,February,2004", "driving test was today. failed it. parallel parking, obviously. the instructor lady wrote something on her clipboard and sighed really loud. my dad said he failed his first one too, and then told me a twenty minute story about a 1983 camaro. retaking it in three weeks."),
        ("17,March,2004", "passed!!!! i can drive now. my dad lets me take his car to practice on tuesdays if i fill up the tank. we drove to the music store in the next town and tyler bought a distortion pedal that sounds like a blender full of bees. we're learning a cover of a song off the new album, link here if you care: urlLink http://www.purevolume.com/parkinglotsaints"),
        ("05,April,2004", "first show!!! well, it was a battle of the bands at the rec center and we went on third out of nine and there were maybe forty people, but still. i messed up the bridge of the second song and nobody noticed except tyler. we got fifth. a girl from my chem class said we were 'actually good' which is the nicest thing anyone has said to me in months."),
        ("22,May,2004", "finals next week. i have a C in chemistry and my mom has entered crisis mode. i'm supposed to be studying molar mass right now but instead i'm typing this and listening to the same three songs on repeat. my dad and mom both came to the spring concert for jazz band and sat next to each other and it was only kind of weird. progress i guess."),
        ("19,June,2004", "summer!! got a job at the pizza place on main street, mostly folding boxes and answering the phone. the manager lets us play whatever we want on the stereo after nine, so i've been converting the whole kitchen staff to punk. band is recording a three song demo in tyler's basement in july. life is ok right now. weird to say that."),
    ],
    # teen girl, ballet, friend drama, LOTR fan; dramatic, lots of caps; contains an EMPTY post
    "3390117.female.16.indUnk.Cancer": [
        ("03,January,2004", "ok so return of the king was AMAZING. i've seen it twice now and cried both times when sam carries frodo up the mountain. my friend jess says it's 'just a movie' but jess also thinks legolas is overrated so her opinion doesn't really count. new year's resolution: finish reading the actual books. i'm halfway through the two towers."),
        ("20,January,2004", "ballet was brutal tonight. madame petrova made us do the same adagio combination eleven times because 'your arms are like spaghetti, girls.' my feet are bleeding a little. but i finally held my arabesque for the whole count, so worth it. spring recital auditions are in two weeks and i want the lilac fairy SO BADLY."),
        ("04,February,2004", ""),
        ("06,February,2004", "sorry about the empty post, i hit publish by accident and don't know how to delete it. ANYWAY. drama. jess told megan that i said megan's boyfriend was boring, which i DID NOT say, i said he was QUIET. now megan won't sit with us at lunch. i hate high school. i'm going to go listen to evanescence and be sad."),
        ("15,February,2004", "I GOT THE LILAC FAIRY!!!! madame petrova pulled me aside after class and said 'you worked hard, it shows.' i almost fainted. my mom took me for ice cream and let me get the big size. rehearsals every saturday starting next week. also megan and i are talking again, we figured out the whole thing was jess being weird."),
        ("02,March,2004", "rehearsals are taking over my life. i have a bio test friday and i've studied for it exactly zero minutes. my pointe shoes are already dead and new ones cost like seventy dollars, so my dad gave me 'the talk' about money. i'm going to babysit the neighbor's twins to pay for the next pair. wish me luck, they bite."),
        ("18,April,2004", "recital was last night!!!! i didn't fall, didn't miss a single count, and my grandma came all the way from dayton and brought me roses. i'm still wearing the glitter from my makeup, it won't come off. i kind of don't want it to. best night of the whole year, maybe of my whole life so far."),
        ("10,May,2004", "finished the return of the king book!!! the ending is SO different from the movie, the scouring of the shire part especially. why did they cut it? megan doesn't get why i'm so upset. summer intensive at the ballet school starts in june, six hours a day. i am terrified and excited in equal amounts."),
    ],
    # potter and mother of two in Vermont; calm, sensory, reflective
    "2204519.female.36.Arts.Pisces": [
        ("17,October,2003", "The leaves are at their peak this week and I've been trying a new glaze the color of the maples along the road, a deep rust that breaks to honey where it thins. The first test tiles came out muddy. The second batch came out of the kiln this morning and one of them, just one, was exactly what I saw in my head. Now I have to figure out how to make it happen twice."),
        ("03,November,2003", "My daughter Lucy is seven and announced she wants to be a potter 'like you but famous.' She made a pinch pot at the studio on Saturday and insisted on glazing it every color we have. It came out brown, of course, as they always do. She thinks it's the most beautiful thing in the house. So do I. It's holding paper clips on my desk."),
        ("21,November,2003", "Craft fair in Burlington this weekend. Sold thirty-one mugs, a dozen bowls, and the big platter I was sure nobody would buy. An older man stood in front of it for ten minutes and then said 'my wife would have liked this,' and paid in cash. I've been thinking about him all week. You never know where the things you make end up, or why."),
        ("08,January,2004", "The kiln's elements burned out two days after Christmas, which is exactly the kind of timing I've come to expect from it. Replacement parts are coming from Ohio and the studio is cold and quiet. I've been using the time to sketch forms and to read, and Ben and I took both kids sledding on the hill behind the church. Sometimes a broken thing is a rest you didn't ask for."),
        ("14,February,2004", "Ben made pancakes shaped like hearts and the kids made me a card out of one of my rejected test tiles, which they glued glitter to. Later I threw twelve tea bowls in one long sitting, the most I've done since Sam was born. My shoulders ache in the good way. The rust glaze is almost reliable now. Almost."),
        ("29,March,2004", "Mud season. The road to the studio is a brown river and the car is the same color as my glazes. Sam (four) has decided every puddle is a personal enemy and must be defeated with boots. I've started teaching a Tuesday night class at the community center, eight adults, mostly retired, who are better students than I ever was."),
        ("05,Mai,2004", "We spent a week visiting Ben's sister in Germany, and I'm typing this on her computer, which is why everything on the screen is in German and I have no idea what I'm clicking. We visited a pottery town in the Westerwald where they've been firing salt-glazed stoneware for centuries. I stood in an old kiln shed and felt very small and very happy."),
        ("02,June,2004", "Home again and the garden exploded while we were gone. Lucy and Sam planted sunflowers in a line along the studio wall, and I've been glazing with the door open, listening to them argue about whose is taller. Ordered salt for a small experiment after Germany. Ben says I am not allowed to salt-fire the house. Fair."),
    ],
    # sysadmin in Minneapolis; LAN parties, Half-Life 2 wait, dry tech humour
    "4410982.male.27.Technology.Aries": [
        ("06,October,2003", "Half-Life 2 has officially been delayed. Not surprised after the source code leak, but I'd already booked the day off. Spent it instead rebuilding the mail server at work, which failed at 2am on Saturday because, and I quote the vendor, 'that's not a supported configuration.' Neither is my sleep schedule."),
        ("25,October,2003", "LAN party at Greg's last night. Eleven people, fourteen computers, one circuit breaker. We tripped it twice during a Counter-Strike match and his wife came downstairs in a bathrobe to tell us we were 'grown men.' This is not technically in dispute. Got home at 5am and slept till two. No regrets."),
        ("13,November,2003", "Somebody in accounting opened an email attachment called 'funny_cats.exe' and I spent most of today cleaning a worm off thirty machines. Sent a company-wide email explaining, gently, why we do not open attachments from strangers. Received four replies asking what an attachment is. I need a vacation. Or a new career. Or a nap under my desk."),
        ("22,December,2003", "Finally built my new box: Athlon 64, a Radeon 9800 Pro, 1GB of RAM, and a case with a blue window because I am a grown man. Benchmarks are great. My girlfriend, Kim, says it looks like a fish tank. She's not wrong. Going home to my parents' in Rochester for Christmas, where I'll be fixing everyone's computer, as is tradition."),
        ("30,January,2004", "Minus thirty with the windchill. The server room is the warmest place in the building and people keep finding excuses to visit me. I installed Linux on an old Pentium II in the corner as a print server and it has been running more reliably than anything Microsoft has ever sold us. Don't tell my boss. Here's the howto I followed: urlLink http://www.tldp.org/HOWTO/Printing-HOWTO"),
        ("08,March,2004", "Kim and I have been together a year today. I got her a real gift (earrings, picked with help from my sister) and she got me a mug that says 'Have you tried turning it off and on again?' I laughed harder than the joke deserved. We ate at the Vietnamese place on Nicollet and talked about maybe moving in together. Big step. Good step."),
        ("17,April,2004", "Got promoted to senior systems administrator, which means the same work plus meetings about the work. The good news is I get a budget for a real backup system, so I no longer have to drive tapes home in my backpack on Fridays. Celebrated with the LAN crew and we played Unreal Tournament 2004 until everyone's wrists hurt."),
        ("29,May,2004", "Moved into the new place with Kim this weekend. Her books outnumber my computers, which she considers a victory. Ran cat5 through the closets myself and only put one hole in the wrong wall. The cat is hiding under the bed and I understand exactly how she feels. Tomorrow I figure out where all these boxes go."),
    ],
    # civil engineer, divorced, fishing; measured, a little lonely
    "2750431.male.45.Engineering.Capricorn": [
        ("12,May,2003", "My daughter set up this blog for me before she went back to college. She says it will be good for me to write things down now that I live alone. I inspect bridges for the state highway department. Today it was a 1950s steel truss over the Cedar River, and the bearings are rusted worse than last year. The river was high and brown and full of sticks."),
        ("31,May,2003", "Went fishing at dawn on the lake up north with my brother Doug. Caught two walleye and a bass we threw back. Doug talks about his kids and his work and his truck, and I mostly listen, which suits us both. We fried the walleye in his cabin with too much butter. It was the best meal I've had since the divorce. Maybe before."),
        ("18,June,2003", "A colleague retired today after thirty-four years and they gave him a plaque and a sheet cake. He said a few words about the bridges he's designed, and about how the river always wins in the end, you just try to slow it down. I've been thinking about that. I'm forty-five. I don't know how many more bridges I have in me."),
        ("07,July,2003", "Fourth of July weekend with Katie home from school. We grilled burgers, watched the fireworks over the river from the bridge I inspected in May (it will hold, I checked), and she told me about her summer internship and a boy named Marcus. I tried to be a cool dad about the boy. I don't think it worked. She laughed at me, which was fine."),
        ("26,July,2003", "Long week. A culvert washed out after the storm on Tuesday and I've been out with the crews every day. Standing in muddy water up to your knees at 6am is not what they show you in engineering school. But there's a satisfaction in it, in putting back what the water took. Got home too tired to cook and ate cereal for dinner."),
        ("23,August,2003", "Katie left for her junior year. The house is very quiet. I cleaned out the garage and found my old fly rod from before she was born, and spent the evening tying flies at the kitchen table, which I haven't done in fifteen years. My fingers remembered more than I expected. Some things come back."),
        ("14,September,2003", "Took the fly rod to the trout stream on Saturday. Lost three flies in the trees on my first ten casts and caught nothing all morning. Then a little brown trout, maybe nine inches, took a hopper at the tail of a pool and I let out a yell I didn't know I still had. Released him. I think I'll go back next weekend."),
        ("10,November,2003", "Signed up for a fly tying class at the community college on Thursday nights. There are six of us: a retired dentist, two college kids, a woman named Ellen who ties better than the instructor, and a man who says nothing at all. Ellen and I got coffee after class last week. It's the first time I've done anything like that in twenty years."),
    ],
    # law student (1L) in Boston; wry, anxious, caffeinated; contains an UNESCAPED ampersand
    "3905562.male.23.Law.Sagittarius": [
        ("25,August,2003", "Orientation week for law school. A dean stood up and said 'look to your left, look to your right,' which I thought only happened in movies. Bought all my casebooks and the Torts book alone weighs more than my cat. My roommate Priya is a 2L and says the first semester is like drinking from a fire hose. I am already thirsty."),
        ("16,September,2003", "Got cold-called in Contracts today on a case about a hairy hand, which is a real case. I said 'expectation damages' three times in a row like a magic spell until the professor moved on. Priya says this counts as a win. Spent the evening briefing cases in the library until it closed and then walked home in the rain."),
        ("09,October,2003", "Torts class is basically Tom & Jerry with citations. Someone is always falling into a hole, getting hit by a falling barrel, or being startled by a cat. The professor does voices. I'm not sure if I'm learning the law or watching a cartoon, but I remember every case, so maybe that's the point."),
        ("04,November,2003", "Outlining season. Everyone in my section has a color-coded outline and mine is a Word document called 'PANIC.doc.' Got a burrito at midnight with two people from my study group, and we agreed nobody knows what consideration is. My mom called to ask if I'm eating vegetables. The burrito had lettuce."),
        ("18,December,2003", "Finished my last exam. Civil Procedure. Four hours. I wrote until my hand cramped and then wrote more. I have no idea how it went and I have decided not to think about it until grades come out in January. Flying home to San Diego tomorrow, where I plan to sleep, eat my grandmother's food, and not open a single book."),
        ("22,January,2004", "Grades came out. B+ in Torts, B in Contracts, A- in Civ Pro, which is the one I was sure I'd failed. I called my dad and he said 'so you're a lawyer now' and I explained, again, that there are two and a half more years. Spring semester: Property, Crim, and legal writing, which is apparently where dreams go to die."),
        ("11,March,2004", "Moot court brief due Friday. I've been in the library so long the night janitor knows my name and my coffee order. He told me he's taking night classes in accounting. We talked for twenty minutes about how tired we both are. Best conversation I've had all week."),
        ("28,April,2004", "Applied for summer jobs all semester and finally got one: a legal aid office that does housing cases, in Dorchester. The pay is almost nothing but I'll actually be helping people keep their apartments, which feels closer to why I came here than anything in the casebooks. Priya took me out for a drink to celebrate. One semester down, sort of."),
    ],
    # --- short user (filtered later): 2 posts ---
    "4012345.female.33.Marketing.Leo": [
        ("19,April,2004", "Trying this blogging thing because our agency wants us to 'understand the medium' before we pitch it to a client. So far I understand that I'm sitting in my kitchen at eleven at night writing to nobody. The client sells frozen waffles. I do not know what waffles have to do with blogs. I suppose that's what I'm paid to figure out."),
        ("02,May,2004", "Pitch went fine. The waffle people loved the idea of a family breakfast blog, which I'll be ghost-writing, which means pretending to be a mom of three in Ohio who is very excited about waffles. I'm a single woman in Chicago who eats yogurt standing over the sink. Marketing is a strange profession."),
    ],
}

# One blogger is written in Latin-1 / cp1252 (like some files in the real corpus): journalist in Chicago.
BLOGS_LATIN1 = {
    "1645208.female.29.Communications-Media.Virgo": [
        ("06,February,2004", "New job at a weekly paper covering city hall, which so far means sitting through four-hour zoning meetings and drinking terrible coffee out of styrofoam. My editor says the zoning board is where the real stories are. I was naïve enough to believe him on Monday. By Thursday I actually believed him for real: a parking lot variance turned into a shouting match about a cousin's restaurant."),
        ("23,February,2004", "Wrote my first cover story, about a neighborhood fighting a storage facility on an empty lot where the kids play baseball. Interviewed a twelve-year-old who explained zoning law better than the alderman did. My mom bought six copies and mailed them to relatives in Puerto Rico, who will not be able to read most of it but will be very proud anyway."),
        ("14,March,2004", "Sunday morning at the café on Division, which is the only place in the neighborhood where you can sit for three hours with one cortado and nobody glares at you. Working on a piece about the last independent hardware store on the street. The owner is eighty-one and still knows where every screw is. The chain store opens across the street in June."),
        ("02,April,2004", "Editor cut my hardware store story in half to make room for an ad. Spent the night being angry about it and then rewriting it so the half that survives is better than the whole thing was. I hate that this works. Dinner with Elena at the Thai place, where she told me I'm too attached to my sources. She's probably right."),
        ("20,April,2004", "The alderman I wrote about in February called the paper to complain about me, by name, which my editor says is a sign I'm doing something right. My hands were shaking all afternoon anyway. Went for a long run along the lake after work, past the beach where it's still too cold to swim, and felt a little better. The lake always helps."),
        ("09,May,2004", "My grandmother is visiting from San Juan for two weeks and has opinions about my apartment, my cooking, my hair and my job, in that order. She read my hardware store piece and said 'very nice, mija, but who is going to fix things now?' which is the question the whole story was trying to ask. She got it in one sentence."),
        ("27,May,2004", "Got a tip about a contract for the new park district building that went to someone's brother-in-law. Spent three days in the records office, which smells like dust and old radiators. The clerk, a kind man named Mr. Osei, helped me find the file and then said 'I didn't help you find that.' Journalism is mostly paperwork and patient people."),
        ("15,June,2004", "The chain hardware store opened today. I went to the old store instead and bought a box of nails I don't need and a café-au-lait colored paint sample for no reason. The owner shook my hand and said business is fine. I don't think it's fine. I wrote it down anyway, the way I write everything down, in case it matters later."),
    ],
}

# =============================================================================================
# AMAZON (Reviews 2023 schema). Items: key -> (category, title, store, price, features, description, details)
# =============================================================================================
CATEGORY_META = {
    "kitchen": ("Amazon Home", ["Home & Kitchen", "Kitchen & Dining"]),
    "books": ("Books", ["Books"]),
    "outdoor": ("Sports & Outdoors", ["Sports & Outdoors", "Outdoor Recreation", "Camping & Hiking"]),
}

ITEMS = {
    # ---- kitchen ----
    "K1": ("kitchen", "Ironridge Pre-Seasoned Cast Iron Skillet with Helper Handle", "Ironridge", 29.95,
           ["Pre-seasoned with vegetable oil, ready to use", "Helper handle for two-handed lifting", "Oven, stovetop, grill and campfire safe"],
           ["A heavy cast iron skillet that holds heat evenly for searing, frying and baking."], {"Material": "Cast Iron", "Color": "Black"}),
    "K2": ("kitchen", "Brightline 8-Cup French Press Coffee Maker, Borosilicate Glass", "Brightline", 24.99,
           ["Four-level filtration screen", "Heat-resistant borosilicate carafe", "Stainless steel frame"],
           ["Brews eight small cups of full-bodied coffee in four minutes."], {"Capacity": "34 Fluid Ounces", "Material": "Glass, Stainless Steel"}),
    "K3": ("kitchen", "Copperleaf Stainless Steel Nesting Mixing Bowls, Set of 5", "Copperleaf", 32.50,
           ["Five sizes from 1.5 to 8 quarts", "Non-slip silicone base", "Dishwasher safe"],
           ["Nesting bowls for mixing, marinating and serving."], {"Material": "Stainless Steel", "Number of Pieces": "5"}),
    "K4": ("kitchen", "Hearthstone 6-Quart Enameled Cast Iron Dutch Oven, Cherry Red", "Hearthstone", 64.00,
           ["Chip-resistant enamel interior", "Tight-fitting lid with self-basting ridges", "Oven safe to 500 degrees F"],
           ["A round Dutch oven for braising, soups and bread baking."], {"Capacity": "6 Quarts", "Color": "Cherry Red"}),
    "K5": ("kitchen", "Kestrel 8-Inch Chef's Knife, High-Carbon German Steel", "Kestrel Cutlery", 45.99,
           ["Full tang, triple-riveted handle", "Hand-sharpened 15-degree edge", "Comes with blade guard"],
           ["An all-purpose chef's knife for chopping, slicing and dicing."], {"Blade Length": "8 Inches", "Blade Material": "High Carbon Stainless Steel"}),
    "K6": ("kitchen", "Nimbus Digital Kitchen Scale with Tare Function, 11 lb Capacity", "Nimbus", 15.99,
           ["Measures in g, oz, lb and ml", "Tare button for containers", "Runs on two AAA batteries (included)"],
           ["A slim scale for baking, portioning and coffee."], {"Maximum Weight Recommendation": "11 Pounds", "Display Type": "LCD"}),
    "K7": ("kitchen", "Oakhaven Bamboo Cutting Board Set with Juice Grooves, 3 Pieces", "Oakhaven", 27.49,
           ["Three sizes for prep and serving", "Deep juice grooves", "Built-in side handles"],
           ["Bamboo boards that are gentle on knife edges."], {"Material": "Bamboo", "Number of Pieces": "3"}),
    "K8": ("kitchen", "PressWell 6-in-1 Electric Pressure Cooker, 6 Quart", "PressWell", 79.95,
           ["Pressure cook, slow cook, rice, saute, steam and keep warm", "Ten safety mechanisms", "Stainless steel inner pot"],
           ["A multi-cooker for fast weeknight meals."], {"Capacity": "6 Quarts", "Wattage": "1000 watts"}),
    "K9": ("kitchen", "Sprig Non-Stick Silicone Baking Mats, Half Sheet, 2-Pack", "Sprig Kitchen", 12.99,
           ["Fits standard half sheet pans", "Reusable, replaces parchment", "Oven safe to 480 degrees F"],
           ["Non-stick mats for cookies, roasting and pastry."], {"Material": "Silicone, Fiberglass", "Size": "16.5 x 11.6 Inches"}),
    "K10": ("kitchen", "Tundra Vacuum Insulated Coffee Tumbler with Slide Lid, 20 oz", "Tundra Drinkware", 19.95,
            ["Double-wall vacuum insulation", "Keeps drinks hot 6 hours, cold 24 hours", "Fits most car cup holders"],
            ["A tumbler for the commute, the office and the trail."], {"Capacity": "20 Fluid Ounces", "Color": "Slate"}),
    # ---- books ----
    "B1": ("books", "The Salt Orchard: A Novel", "Marianne Vell (Author)", 16.99,
           [], ["Three generations of women tend a failing apple orchard on the Maine coast."], {"Publisher": "Harrow House", "Print length": "384 pages"}),
    "B2": ("books", "Quiet Machines", "Dev Anand Rao (Author)", 14.99,
           [], ["A maintenance robot on a generation ship begins to suspect the crew is already gone."], {"Publisher": "Farline Books", "Print length": "312 pages"}),
    "B3": ("books", "Every Garden Has a Ghost: Essays", "Ruth Calder (Author)", 18.00,
           [], ["Essays on inheritance, memory and the gardens we are handed."], {"Publisher": "Little Fern Press", "Print length": "240 pages"}),
    "B4": ("books", "The Weeknight Table: 120 Fast Family Dinners", "Gina Marsh (Author)", 22.50,
           [], ["Dinners that take thirty minutes or less, with shopping lists and make-ahead tips."], {"Publisher": "Countertop Media", "Print length": "288 pages"}),
    "B5": ("books", "A Map of Small Rivers", "Tomas Ferrant (Author)", 15.95,
           [], ["A widowed surveyor retraces the rivers of his childhood in rural Quebec."], {"Publisher": "Harrow House", "Print length": "256 pages"}),
    "B6": ("books", "Cold Harbor Station", "J. R. Kessler (Author)", 9.99,
           [], ["A fisheries inspector finds a body on an Alaskan research station during a storm."], {"Publisher": "Blackline", "Print length": "400 pages"}),
    "B7": ("books", "Trail Sense: A Field Guide to Reading the Land", "Corinne Ash (Author)", 19.95,
           [], ["How to read weather, water, animal sign and terrain on foot."], {"Publisher": "Switchgrass Press", "Print length": "224 pages"}),
    "B8": ("books", "The Long Division: A Memoir", "Helen Okafor (Author)", 17.00,
           [], ["A math teacher's memoir of her mother's illness and the years that followed."], {"Publisher": "Little Fern Press", "Print length": "272 pages"}),
    "B9": ("books", "Starlight for Beginners: Backyard Astronomy Without a Telescope", "Paul Lindqvist (Author)", 21.99,
           [], ["Seasonal star charts and naked-eye observing projects."], {"Publisher": "Switchgrass Press", "Print length": "192 pages"}),
    "B10": ("books", "A Thousand Borrowed Houses", "Ines Duarte (Author)", 16.00,
            [], ["A house-sitter in 1960s Lisbon lives a different life in every home she keeps."], {"Publisher": "Farline Books", "Print length": "344 pages"}),
    # ---- outdoor ----
    "O1": ("outdoor", "Ridgeback 2-Person Ultralight Backpacking Tent, 3-Season", "Ridgeback Outdoor", 249.00,
           ["Trail weight 2 lb 14 oz", "Two doors and two vestibules", "Color-coded clips for fast pitching"],
           ["A freestanding two-person tent for three-season backpacking."], {"Capacity": "2 Persons", "Item Weight": "2.9 Pounds"}),
    "O2": ("outdoor", "Cirrus 20 Degree Down Mummy Sleeping Bag, 650 Fill", "Cirrus", 189.95,
           ["650 fill-power water-resistant down", "Draft collar and contoured hood", "Compression sack included"],
           ["A lightweight mummy bag for cold shoulder-season nights."], {"Temperature Rating": "20 Degrees Fahrenheit", "Item Weight": "2.2 Pounds"}),
    "O3": ("outdoor", "Switchback Carbon Fiber Trekking Poles, Pair, Cork Grips", "Switchback", 89.00,
           ["Three-section carbon fiber shafts", "Cork grips with extended foam", "Flick-lock adjustment"],
           ["Light, stiff poles for hiking and backpacking."], {"Material": "Carbon Fiber", "Item Weight": "15 Ounces"}),
    "O4": ("outdoor", "Emberline Compact Backpacking Stove with Piezo Igniter", "Emberline", 39.95,
           ["Weighs 3 ounces", "Boils a liter in about 4 minutes", "Fits standard threaded canisters"],
           ["A tiny canister stove for solo and pair trips."], {"Fuel Type": "Isobutane-propane", "Item Weight": "3 Ounces"}),
    "O5": ("outdoor", "Lumen 400 Rechargeable Headlamp with Red Light Mode", "Lumen Gear", 29.99,
           ["400 lumens max", "Red night-vision mode", "USB rechargeable, IPX4 water resistant"],
           ["A bright, light headlamp for camp, running and repairs."], {"Brightness": "400 Lumen", "Power Source": "Battery Powered"}),
    "O6": ("outdoor", "Aquaclear Squeeze Water Filter System with Two Pouches", "Aquaclear", 36.95,
           ["0.1 micron hollow fiber filter", "Two 1-liter squeeze pouches", "Backflush syringe included"],
           ["A portable filter for backpacking and emergencies."], {"Item Weight": "3 Ounces", "Filter Type": "Hollow Fiber"}),
    "O7": ("outdoor", "Basin 45L Hiking Backpack with Rain Cover", "Basin Packs", 119.00,
           ["Adjustable torso length", "Ventilated back panel", "Integrated rain cover"],
           ["A mid-size pack for overnights and long weekends."], {"Capacity": "45 Liters", "Item Weight": "3.1 Pounds"}),
    "O8": ("outdoor", "Canyon Low-Profile Folding Camp Chair with Cup Holder", "Canyon Camp Co.", 44.99,
           ["Supports up to 300 lb", "Folds flat into carry bag", "Steel frame"],
           ["A sturdy chair for campsites, beaches and sidelines."], {"Maximum Weight Recommendation": "300 Pounds", "Color": "Olive"}),
    "O9": ("outdoor", "Tidewater Self-Inflating Sleeping Pad, 2 Inch", "Tidewater", 59.95,
           ["Open-cell foam core", "Two-way valve", "R-value 3.6"],
           ["A comfortable pad for car camping and short trips."], {"Thickness": "2 Inches", "R-Value": "3.6"}),
    "O10": ("outdoor", "Northfork Packable Waterproof Rain Jacket", "Northfork", 69.00,
            ["2.5-layer waterproof breathable shell", "Packs into its own pocket", "Pit zips"],
            ["A light rain shell for hiking and travel."], {"Material": "Nylon", "Closure": "Zipper"}),
}
# K1 has two size variants sold under the same parent listing (variant asins are generated below).
VARIANT_PARENTS = {"K1": ["10.25 Inch", "12 Inch"]}

# Reviewers: user_id -> (persona note, [ (item key, rating, date "YYYY-MM-DD", title, text), ... ]) chronological
REVIEWS = {
    # retired nurse and grandmother who cooks for a big family; gentle, detailed, practical
    "AE3K7N2QXRMB5YVT4HW6PLDZ8CGA": ("retired nurse, grandmother, cooks for family", [
        ("K4", 5.0, "2021-02-14", "Worth every penny for Sunday stew", "I've made beef stew for my family every Sunday for forty years and this Dutch oven is the best pot I've owned for it. Holds a low simmer beautifully on my old electric stove. It is heavy, so if your wrists are bad like mine, lift it with both hands and a good pair of mitts."),
        ("B4", 4.0, "2021-03-02", "Good ideas for busy families", "Bought this for my daughter, who has three kids and a job, and then borrowed it back. The sheet pan chicken with lemon and potatoes is now in our rotation. A few recipes call for ingredients our small-town grocery doesn't carry, but most are very doable."),
        ("K6", 5.0, "2021-05-20", "Simple and accurate", "My granddaughter got me into baking bread by weight and this little scale made it easy. The numbers are large enough to read without my glasses, which matters more than you'd think. Tare button works every time. Batteries are still going after four months."),
        ("B1", 5.0, "2021-08-09", "Made me call my sister", "A lovely slow book about three generations of women and an old orchard. It reminded me so much of my mother's kitchen in the fall that I called my sister after I finished it and we talked for an hour. Our book club gave it the highest score we've given all year."),
        ("K9", 4.0, "2021-11-22", "Cookies slide right off", "Used these for about two hundred Christmas cookies and nothing stuck once. They wash up in the sink easily. Taking off one star because the edges started curling a bit after a few weeks in the hot oven, but they still lie flat enough to use."),
        ("B8", 5.0, "2022-03-15", "Honest and kind", "As a retired nurse I've read a lot of illness memoirs and most of them either sugarcoat it or wallow. This one does neither. The author writes about caring for her mother with a clear eye and a lot of love. The chapter about the night shift at the hospice had me in tears."),
        ("K8", 3.0, "2022-06-30", "Fine, but I'm old fashioned", "It does everything it says. Rice came out well and the pot roast was tender in an hour. But I missed the smell of something cooking all afternoon, and I find all the buttons confusing. My son-in-law loves it, so I gave it to him. Probably better for younger cooks."),
        ("O8", 4.0, "2022-09-10", "Comfortable at the soccer field", "I sit through a lot of grandkid soccer games and this chair is much easier on my back than the bleachers. It's low, so getting out of it takes a little effort at my age, but it's sturdy and the cup holder actually fits a thermos. Folds up small enough for my trunk."),
    ]),
    # ultralight backpacker, mechanical engineer, counts grams; technical, blunt
    "AG7WQ2ZP4N6KXT3JB8RYHM5VDLCE": ("ultralight backpacker, engineer, weighs everything", [
        ("O1", 4.0, "2021-04-11", "Light and livable, guy lines are junk", "Weighed it at 2 lb 15 oz with stakes, which matches the spec closely. Pitches in under three minutes once you learn the clips. Two doors make a huge difference with a partner. The included guy line is slippery and won't hold a knot, so I replaced it with reflective cord. Solid shelter overall."),
        ("O6", 5.0, "2021-05-02", "The only filter I carry now", "Used it on a 70 mile section hike with plenty of silty water. Flow rate stayed decent as long as I backflushed every evening. The pouches are the weak point, one developed a pinhole seam leak on day five, so carry a spare bottle with a threaded mouth. At three ounces it's hard to beat."),
        ("O3", 3.0, "2021-06-19", "Light but a lock slipped", "Very light at 15 oz the pair, and the cork grips are comfortable in heat. On a steep descent one of the flick locks slipped and the pole collapsed two inches, which is exactly the wrong moment. Tightened the screw and it's been fine since, but I now check them every morning."),
        ("O4", 5.0, "2021-07-25", "Boils fast, weighs nothing", "Measured 3.1 oz on my scale. Boiled 500 ml in about 2 minutes 40 seconds at 9,000 feet with no wind. In wind you need a screen, like any canister stove. Piezo igniter worked every single time over two weeks, which surprised me. Pot supports are a little narrow for wide pots."),
        ("B7", 4.0, "2021-09-03", "Useful, more than I expected", "I bought this expecting basic trail lore and learned a fair amount. The chapter on reading drainage patterns to find water in dry country was genuinely useful on my last desert trip. Some of the weather folklore sections are more charm than science, but the author is mostly careful about that."),
        ("O2", 5.0, "2021-10-16", "Warm to the rating, which is rare", "Slept in it at 22 degrees in the Wind Rivers with a thin base layer and was comfortable, not cozy, which is about what you should expect at the rating. Loft recovers quickly after compression. The zipper snags on the draft tube occasionally. Weight is within an ounce of spec."),
        ("K10", 2.0, "2022-01-08", "Lid leaks, insulation is fine", "Keeps coffee hot for most of a morning drive to the trailhead. The problem is the slide lid, which dribbles coffee when tilted past about 45 degrees. I now keep a rubber band around it, which is a silly fix for a product that should just work. Not taking this one on the trail."),
        ("O10", 4.0, "2022-04-23", "Packs tiny, breathes okay", "Stuffs into its own pocket and weighs 9.8 oz on my scale. Kept me dry through a four hour rainstorm in the Smokies. Breathability is average, I was damp inside on the climbs even with pit zips open. For the weight it's a good trade. Hood adjustment is well designed."),
        ("B2", 4.0, "2022-08-14", "Read it in a tent in two nights", "Good hard science fiction with a lonely maintenance robot as the narrator. The engineering details about the ship's life support are mostly plausible, which I appreciated. The ending felt rushed. Still, I read the whole thing by headlamp over two nights in the backcountry and didn't regret the weight."),
    ]),
    # mom of three, part-time dental hygienist; busy, funny, short on time
    "AFQ4R8M2T6WNZC7HX3JKBP5YVDLS": ("busy mom of three", [
        ("K8", 5.0, "2021-01-19", "Saved my weeknights", "Three kids, two of them in sports, and I work part time. This thing has made dinner at 6:15 actually happen. Chili from dry beans in an hour. Rice that nobody burns. My nine-year-old now wants to 'help' by pushing the buttons, which is its own problem, but dinner gets made."),
        ("B4", 5.0, "2021-02-27", "Finally a cookbook I use", "I own eleven cookbooks and this is the only one with sauce stains on it. The recipes really are thirty minutes if you don't have a toddler hanging on your leg, forty if you do. The shopping lists at the back of each chapter are genius. The black bean quesadillas are a hit with all three kids."),
        ("O8", 4.0, "2021-04-24", "Sideline approved", "Bought two for baseball season. They hold up to being thrown in the back of a minivan with bats and cleats. My husband is six foot four and says it's comfortable, though low. The cup holder is shallow and I've lost one coffee to it. Would buy again."),
        ("K3", 5.0, "2021-06-12", "Used daily", "These bowls get used for everything: cookie dough, popcorn on movie night, a puke bowl during the stomach bug (sorry, but moms will understand). They nest, they don't slide around on the counter, and they survive my dishwasher and my kids. Nothing fancy, just works."),
        ("O5", 4.0, "2021-08-07", "Kids fought over it", "Bought this for a family camping trip and the kids fought over who got to wear it. Bright enough to find the bathroom at the campground without tripping. Red mode is nice for not waking the whole tent. Charges with a phone cable. Strap is a bit big for small heads."),
        ("B6", 4.0, "2021-09-29", "Kept me up past my bedtime", "I get about fifteen minutes of reading a night before I fall asleep, so a book has to really grab me. This one did. Read it in a week, which is a record for me these days. The mystery is clever, though the romance subplot was unnecessary. Good escape from carpool life."),
        ("K9", 5.0, "2021-12-11", "No more scrubbing cookie sheets", "We bake a ridiculous number of cookies in December and these mats have saved me so much scrubbing. Kids can help without me worrying the dough will fuse to the pan. I also roast chicken nuggets and fries on them. Rinse and done. Buying a second set."),
        ("O9", 3.0, "2022-07-16", "Comfortable but slow to inflate", "Comfortable enough for my kids to sleep on at the lake campground, and my eight-year-old said it was 'like a real bed.' It does not self-inflate nearly as fast as advertised, I had to blow it up the rest of the way every night. Packs up bulky. Fine for car camping."),
    ]),
    # college student on a tight budget, sci-fi fan; casual, funny, price-sensitive
    "AHX2N9B4K7QRT5WZMC3LJP8VDYGF": ("broke college student, sci-fi fan", [
        ("K10", 4.0, "2021-09-06", "Survives 8am lectures", "Fill it at 7 with dorm coffee and it's still hot at my 11am lab. Fits the cup holder in my roommate's car. Lost one star because it leaks if it rolls around in my backpack, so I learned the hard way to keep it upright. For twenty bucks it's been worth it."),
        ("B2", 5.0, "2021-10-02", "Best sci fi I've read in years", "Stayed up until 3am finishing this the night before a midterm, which was a bad decision I don't regret. The robot narrator is weirdly relatable for a machine, it just wants to fix things and be left alone. That twist in the middle made me yell. Already lent it to two friends."),
        ("K6", 4.0, "2021-11-14", "Macro tracking on a budget", "Using this to meal prep in my tiny apartment kitchen so I stop eating instant ramen every night. Accurate enough for tracking protein, which is what I wanted. It's light so it slides around when you press the buttons. For sixteen dollars I'm not complaining."),
        ("O5", 5.0, "2022-01-23", "Better than my phone flashlight", "Bought it for a winter camping trip with the outdoor club. Insanely bright on the top setting and the battery lasted two full nights. Also use it when the power goes out in our building, which is often. Red light mode lets me read without waking my roommate."),
        ("B9", 4.0, "2022-03-18", "No telescope needed", "I can't afford a telescope so this was perfect. Went out to the soccer fields behind campus with the spring star charts and found Leo and Arcturus by myself. Some charts are a little small to read in the dark. Got me hooked enough to join the astronomy club."),
        ("K5", 3.0, "2022-05-04", "Fine for the price", "It's a big upgrade from the dull knife that came with my apartment. Cuts onions and chicken easily. The edge started to dull after about two months, and I don't own a sharpener yet. Handle is comfortable. Don't put it in the dishwasher like my roommate did."),
        ("O6", 5.0, "2022-06-25", "Cheap insurance", "Used it on a three day trip with the outdoor club and filtered water for four people from a creek. Easy to use, and the backflush syringe made it fast again when it got slow. Way cheaper than the pump filter the club owns. Cheapest piece of gear I own and the one I trust most."),
        ("B6", 2.0, "2022-10-09", "Not for me", "My roommate loved this so I borrowed her copy and then bought my own for a long bus ride. The first half was tense, but the detective's inner monologue got repetitive and I figured out the killer by page 200. The Alaska setting is cool though. Maybe I just prefer space."),
    ]),
    # retired English teacher, book club leader; literary, thoughtful, exacting
    "AJ5P3W8Y2KMN7QZT4XBHRC6LVGDF": ("retired English teacher, book club", [
        ("B5", 5.0, "2021-03-21", "A quiet masterpiece", "Ferrant writes grief the way rivers move: slowly, then all at once. The surveyor's measurements become a kind of prayer over the course of the novel. Our book club spent two full meetings on it. One member said it was 'too slow,' and I understand, but the slowness is the point."),
        ("B3", 4.0, "2021-04-30", "Lovely, uneven", "Some of these essays are among the best I've read about inheritance; the one about her father's roses made me put the book down and go look at my own garden. A few of the later essays feel like filler from magazine assignments. Worth it for the first half alone."),
        ("B10", 5.0, "2021-07-05", "Transporting", "I have never been to Lisbon and now I feel I've lived there. Each house the narrator keeps reveals another life she could have had, and the structure is cleverer than it first appears. The final chapter recasts everything before it. Highly recommended for book clubs; there's much to argue about."),
        ("K2", 4.0, "2021-08-15", "Good coffee, fragile glass", "I've switched from a drip machine to this and the coffee is richer. I knocked the first carafe against the faucet and it cracked, so be gentle. The replacement glass was reasonably priced. Four minutes of waiting is a pleasant ritual with the morning paper."),
        ("B1", 3.0, "2021-10-24", "Beautiful prose, thin plot", "The sentences in this novel are lovely, particularly the descriptions of frost on the orchard. But very little happens in the middle third, and the youngest daughter's storyline never quite resolves. Our club was split. I admired it more than I enjoyed it."),
        ("B8", 5.0, "2022-02-12", "Honest without being cruel", "A memoir about caring for a dying parent can easily turn into a catalog of suffering. This one doesn't. Okafor writes about her mother and about mathematics with equal tenderness, and the chapter where she explains long division to her mother in the hospital is unforgettable."),
        ("K7", 4.0, "2022-05-29", "Attractive and practical", "I use the large board for bread and the small one for cheese when the book club meets here. The juice grooves work well for roasts. After a few months one board developed a slight warp, probably because I left it wet overnight, which is my fault. Oil them regularly."),
        ("B2", 2.0, "2022-09-18", "Not my genre, it turns out", "My grandson insisted I read this. The premise is interesting and the robot narrator has charm, but the prose is functional at best, and the long technical passages lost me entirely. I can see why younger readers like it. I'll stick to my rivers and orchards."),
    ]),
    # serious amateur chef, ex-line cook, now software sales; critical, precise, long
    "AKM8T3V6Q2XWB9NZ4RYJP7HCLDFG": ("ex-line cook, exacting home chef", [
        ("K5", 4.0, "2021-01-30", "Good steel, needs a real edge", "Out of the box it's sharp enough for most people but not truly sharp; I put it on a 1000/6000 stone and it took a very nice edge. The steel holds up well through a week of daily prep. The bolster makes full-length sharpening harder. Balance is slightly handle-heavy, which I prefer."),
        ("K1", 5.0, "2021-03-13", "Seasoning was decent, I redid it anyway", "The factory seasoning is better than most, but I stripped it and did six thin coats of flaxseed oil out of habit. Heats evenly on my gas range and retains heat brilliantly for searing steak. Helper handle is appreciated, this thing is heavy. A pan that will outlive me."),
        ("K4", 4.0, "2021-05-08", "Excellent braiser, lid knob caveat", "Even heat, tight lid, enamel that cleans up with a soak. I've done short ribs, coq au vin and a dozen loaves of no-knead bread in it. The plastic lid knob is only rated to 390 degrees, so for bread at 475 I swapped in a stainless knob. Should come that way at this price."),
        ("K7", 2.0, "2021-06-26", "Too hard on edges", "Bamboo is harder than most people think, and these boards dulled my knives noticeably faster than my maple end-grain board. The juice grooves are deep, which is nice for carving, but the boards slid around unless I put a damp towel underneath. Fine for serving, not for serious prep."),
        ("K8", 4.0, "2021-09-11", "Better than expected for stock", "I was a skeptic, but pressure-cooked chicken stock in 45 minutes is clearer and richer than my four hour stovetop version. Saute function is too weak to get a real sear, so I brown in cast iron first. Sealing ring holds onto smells, get a second one for desserts."),
        ("B4", 2.0, "2021-11-06", "Fast, but cuts too many corners", "I wanted to like this. Several recipes rely on canned soups and seasoning packets, and the timing assumes you already have everything chopped. The 'restaurant-style' fried rice uses freshly cooked rice, which any line cook will tell you won't fry properly. Fine for beginners, not for me."),
        ("K9", 3.0, "2022-01-15", "Okay for cookies, bad for browning", "They work as advertised for cookies and sticky things like caramel. But vegetables roasted on them steam rather than brown, because the silicone insulates the food from the pan. I'm back to parchment for roasting. Fine product, just know what it's for."),
        ("K2", 3.0, "2022-04-02", "Sludge at the bottom", "Brews a heavy, full cup, and the carafe is nicely made. The filter lets through more fines than I'd like even with a coarse grind, so the last inch of every pot is sludge. If you like a clean cup, look elsewhere. If you don't mind grit, it's a fine press."),
        ("O4", 4.0, "2022-07-30", "Surprisingly good for real cooking", "Took it on a canoe trip and cooked actual food, not just boiled water: a pan of garlic shrimp and a pot of rice. Simmer control is better than I expected from a stove this small, though the flame is narrow, so use a small pan or you'll get a hot spot right in the middle."),
    ]),
    # scoutmaster, high school history teacher; practical, safety-minded, thinks about kids using gear
    "AMB6Z4C9R2TWQ8NXK5JHPV3YLDGF": ("scout troop leader, history teacher", [
        ("O7", 5.0, "2021-03-27", "Fits every scout in the troop", "We bought six of these for troop use because the torso adjustment fits boys from 5 foot 1 to 6 foot 2. They've survived two summer camps and a fifty miler at Philmont with only one broken buckle, replaced free. The rain cover is a must in the Ozarks. Excellent value for a group."),
        ("B7", 5.0, "2021-04-17", "Now required reading for our older scouts", "I use several chapters of this book to teach wilderness navigation and weather. The explanations are clear enough for a thirteen-year-old and interesting enough for the adult leaders. The section on reading animal trails led to a great hour of tracking on our last campout."),
        ("O5", 4.0, "2021-05-22", "Survived a troop of twelve year olds", "I've given these to new scouts for three years. They've been dropped, stepped on, left in rain and packed in wet socks, and most still work. Red mode is great for night hikes where we don't want to ruin our eyes. Battery indicator would be nice; kids never know when it's about to die."),
        ("O6", 5.0, "2021-06-29", "Great teaching filter", "Simple enough that every scout can learn to use it and backflush it in five minutes. We make each patrol responsible for its own filter on overnights and have never had a stomach issue. Replace the pouches every season, as they do eventually spring leaks when kids sit on them."),
        ("O9", 4.0, "2021-08-21", "Comfortable for older knees", "As one of the older leaders, my knees and back appreciate this pad on troop campouts. Two inches of foam is a real improvement over the closed-cell pads the boys use. It's too heavy for backpacking, so it stays in the car camping bin. Valve works well."),
        ("B10", 4.0, "2021-12-28", "A history teacher's holiday read", "My wife picked this for our holiday reading and I enjoyed it more than expected. The details of life under the Salazar regime are handled lightly but accurately; I checked a couple. The narrator's habit of imagining other lives got a little repetitive, but the ending earns it."),
        ("O1", 3.0, "2022-05-14", "Good tent, not for scouts", "Personal purchase, not troop. It's a lovely light tent for adult backpacking, but the thin floor and delicate poles would not survive a troop of teenagers. I've already had to patch a pinhole from a pine needle. For careful adults it's fine. Buy the footprint."),
        ("O2", 5.0, "2022-10-22", "Warm on a cold November campout", "Our November campout went down to 24 degrees and I was warm all night, which hasn't happened in the old synthetic bag I've used since 2009. Packs down to half the size. I'll be recommending it to the adult leaders who are ready to upgrade."),
    ]),
    # astrophotographer, car camps for dark skies, works as pharmacist; precise, enthusiastic about nights
    "APQ7N3H8W2ZKT6BXR4MJC9YVLDGS": ("pharmacist, astrophotographer, car camper", [
        ("B9", 5.0, "2021-02-06", "The book I wish I'd started with", "I've been photographing the night sky for six years and I still picked up tricks here, especially the method for judging sky darkness by counting stars in the Little Dipper. The seasonal charts are clear. I bought copies for my nieces, who are now asking for binoculars."),
        ("O5", 5.0, "2021-03-14", "Red mode is a must for astronomy", "Dim red mode is dim enough that I can check camera settings without ruining my dark adaptation, which is rare; most red lights are far too bright. You can go straight to red without flashing white at everyone in the field, if you hold the button. Comfortable through a long night of shooting."),
        ("O8", 4.0, "2021-05-15", "Low chair, great for looking up", "This chair sits low enough that I can lean back and watch meteors without craning my neck. Steel frame is stable on uneven desert ground. The fabric gets cold at night so I throw a blanket over it. Fits in my hatchback alongside the tripods."),
        ("K10", 5.0, "2021-08-12", "Coffee at 2am, still hot", "I fill it at 9pm before driving out to a dark site and the coffee is still properly hot when I take a break at 2am. That's all I need from a tumbler. The lid is fine if you keep it upright, which I always do with camera gear in the car anyway."),
        ("O9", 4.0, "2021-09-04", "Good sleep between sessions", "I nap in the back of my car between the end of a photo session and dawn, and this pad has made those naps actually restful. It self-inflates about three quarters of the way; a few breaths do the rest. Slightly too wide for my hatchback with the seats down, so it curls at the edges."),
        ("B2", 4.0, "2021-11-27", "Space loneliness done right", "I read this during cloudy nights waiting for the weather to clear, which seemed appropriate. The robot narrator's observations about the stars outside the ship are lovely, and mostly astronomically reasonable. The middle sags a bit but the ending sticks the landing."),
        ("O10", 3.0, "2022-03-05", "Fine shell, noisy fabric", "It keeps out wind and light rain on cold nights in the field. But the fabric is loud, crinkly enough that it's audible on my video timelapses when I move. Packs small. If you need a rain jacket for hiking it's probably great; for quiet nights under the stars, less so."),
        ("K2", 4.0, "2022-08-20", "Makes a strong pot before a long night", "I drink my coffee black and strong and this makes exactly that. Brew, pour straight into a tumbler, drive to the desert. Cleanup is a little annoying at 8pm when you're rushing out the door, but the coffee is worth it. Glass has survived a year of use."),
    ]),
    # rural hunter and angler in Montana; terse, plain, no nonsense
    "AQ2T8B5X7WNKZ4MR3CJHPY6VLDGF": ("rural hunter and angler, terse", [
        ("K1", 5.0, "2021-10-03", "Good pan", "Cooks elk steaks and fresh trout like a pan should. Used it on the stove at home and over the fire at elk camp. Heavy, but it's cast iron. Seasoning held up fine. My dad had one like it for fifty years and I expect this one will last as long."),
        ("K5", 4.0, "2021-11-20", "Holds an edge", "Bought for butchering deer in the kitchen. Holds an edge well through a whole quarter. Handle stays grippy when wet. I'd like it a little thicker at the spine for joints, but that's what my boning knife is for. Good knife for the money."),
        ("O4", 3.0, "2022-01-29", "Cold weather struggles", "Works fine in fall. At 10 degrees on an ice fishing trip it barely put out a flame because the canister got cold. That's true of all canister stoves, but worth knowing. Keep the canister in your jacket. Igniter worked every time."),
        ("O3", 4.0, "2022-03-12", "Good on the steep stuff", "Used these packing out a deer on a steep sidehill. Helped a lot with a heavy load. Cork grips don't get slippery with sweaty gloves. One tip got bent on a rock, replaced it for a few bucks. Lighter than they look."),
        ("B6", 4.0, "2022-04-16", "Good story", "Don't read much, but my wife gave me this for the ice fishing shack. Author knows boats and weather. Didn't see the ending coming. Read it in three weekends. Asked her to find me the next one."),
        ("O7", 4.0, "2022-06-04", "Held up to a hunting season", "Carried it through a full season scouting and hunting. Hip belt carries weight well. Rain cover is useful for keeping blood off the pack, not just rain. Side pockets too small for a water bottle with gloves on. Otherwise solid."),
        ("O2", 2.0, "2022-09-24", "Not for hunting camp", "Warm enough, but the shell fabric tore on the first night on a rough cot in my wall tent. Down started leaking out. Patched it with tape. Fine for backpacking folks who are careful. Not tough enough for how I use gear."),
        ("K6", 5.0, "2022-12-10", "Good for jerky", "Use it to weigh meat for jerky and sausage batches so the cure comes out right. Accurate to the gram, checked it against a gun powder scale. Cheap and works. That's all I need."),
    ]),
    # van-lifer, freelance illustrator, minimalist; everything judged by space and multipurpose use
    "AR9W4K2N7XTQB3ZMH5CJPV8YLDGS": ("van-lifer illustrator, minimalist", [
        ("O4", 5.0, "2021-05-30", "My whole kitchen", "I live in a converted van and this stove is my entire kitchen most nights. Morning coffee, lentils, eggs. Fits in a mug with a small canister. I keep a wind screen folded under the mattress. A year in, it's lit first try every time. Tiny, reliable, no complaints."),
        ("K2", 4.0, "2021-06-20", "Van coffee ritual", "I make coffee in this every morning on the van's back step. Tastes much better than instant. The glass worries me on bumpy forest roads, so I wrap it in a dish towel and wedge it in a drawer. It's survived eight months of gravel. A steel version would be better for my life."),
        ("O6", 5.0, "2021-07-11", "Water from anywhere", "I fill my jugs from streams and lakes when I'm boondocking, filter through this, and have never gotten sick. Takes some patience to squeeze through ten liters, so I hang it from the van's door and let gravity do it. Best twenty-five bucks I've spent on the van."),
        ("K10", 4.0, "2021-09-18", "One cup does everything", "I only own one cup and it's this one. Coffee in the morning, water in the afternoon, soup once when I ran out of bowls. Keeps things hot or cold all day. The slide lid isn't perfectly sealed, so it lives in the cup holder, never in a bag."),
        ("B10", 5.0, "2021-11-02", "A book about living in borrowed spaces", "Fitting, given I live in a van. The narrator moves through other people's houses and tries on their lives, and I recognized so much of the strange freedom and loneliness of that. I read it on a beach in Oregon in two sittings and then did a bunch of sketches of imaginary houses."),
        ("O10", 5.0, "2022-02-19", "Lives on the back of my door", "Rains a lot in the Pacific Northwest in winter and I'm out in it every day. This jacket packs into its pocket and hangs on a hook inside the van door. Dries fast in a small space, which matters when you have no closet. Pit zips are handy on hikes."),
        ("K7", 3.0, "2022-04-09", "Only kept one board", "The set is nice but I don't have room for three cutting boards. Kept the small one, which doubles as a tray and a lap desk for drawing. It's a little thin and has bowed slightly from humidity changes. Gave the other two to a friend with an actual kitchen."),
        ("B9", 4.0, "2022-08-27", "Perfect for dark sky camping", "I park in some very dark places and this book has taught me the names of things I'd been looking at for years. Simple charts, good seasonal walks around the sky. I sketch the constellations in my notebook now. Wish it had a glow-in-the-dark cover so I could find it at night."),
    ]),
    # --- short users (filtered later) ---
    "AS3D6F9G2H5J8K4L7Z1X3C6V9B2N": ("one-off buyer", [
        ("K3", 5.0, "2022-11-25", "Great bowls", "Bought these as a housewarming gift for my brother and then bought a set for myself. They stack nicely, feel solid and the rubber bottoms really do keep them from sliding on the counter."),
    ]),
    "AT4Y7U2I5O8P3Q6W9E1R4T7Y2U5I": ("occasional reviewer", [
        ("O8", 2.0, "2022-06-18", "Broke after one season", "Comfortable at first, but one of the rivets on the armrest popped out by the end of the summer and now the chair leans to one side. For the price I expected it to last longer than a single season."),
        ("B1", 4.0, "2023-01-07", "Nice winter read", "A slow, gentle novel about an apple orchard that was perfect for a snowed-in weekend. The middle dragged a little for me, but I loved the grandmother and the descriptions of the sea fog rolling in."),
    ]),
}
# One review appears twice, once per size variant of K1 (same user, text and timestamp).
DUPLICATE_VARIANT_REVIEW = ("AKM8T3V6Q2XWB9NZ4RYJP7HCLDFG", "K1")

# =============================================================================================
# Writers
# =============================================================================================
SEED = 20240601
B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _h(*parts: str) -> int:
    return int(hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest(), 16)


def _b36(n: int, width: int) -> str:
    s = ""
    for _ in range(width):
        n, r = divmod(n, 36)
        s = B36[r] + s
    return s


def _day_epoch(date: str) -> int:
    return calendar.timegm(dt.datetime.strptime(date, "%Y-%m-%d").timetuple())


def _slug(title: str) -> str:
    words = "".join(c if c.isalnum() or c == " " else " " for c in title.lower()).split()
    return "_".join(words)[:50].rstrip("_")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"demo corpus constraint violated: {msg}")


def write_reddit(out: Path) -> None:
    rng = random.Random(SEED + 1)
    d = out / "reddit"
    d.mkdir(parents=True, exist_ok=True)
    sub_ids = {}
    subs = {}
    for key, (author, sr, date, title, text) in REDDIT_SUBMISSIONS.items():
        if key != "x1":
            _check(len(title) + len(text) >= 300, f"submission {key} too short")
        created = _day_epoch(date) + rng.randrange(6 * 3600, 86400)
        # Pushshift-like base36 ids whose leading letter grows with time (2019: a-d, 2020: e-h)
        sid = _b36(_h("sub", key) % (36 ** 5) + 36 ** 5 * (10 + (created - 1546300800) // (86400 * 92)), 6)
        sub_ids[key] = sid
        subs[key] = {
            "author": author,
            "author_fullname": "t2_" + _b36(_h("user", author), 8),
            "created_utc": created,
            "id": sid,
            "is_self": True,
            "title": title,
            "selftext": text,
            "score": 2 if key == "x1" else rng.choice([2, 3, 5, 8, 12, 17, 24, 31, 46, 58, 77, 103, 164, 212, 389]),
            "num_comments": 0,
            "subreddit": sr,
            "subreddit_id": "t5_" + _b36(_h("sr", sr), 5),
            "distinguished": None,
            "edited": False,
            "permalink": f"/r/{sr}/comments/{sid}/{_slug(title)}/",
        }
    _check(len(set(sub_ids.values())) == len(sub_ids), "submission id collision")
    # noise: one submission edited with an int epoch
    subs["s2"]["edited"] = subs["s2"]["created_utc"] + 5 * 3600 + 17 * 60

    comments = {}
    for key, (author, target, date, body) in REDDIT_COMMENTS.items():
        if body != "[removed]":
            _check(len(body) >= 200, f"comment {key} too short ({len(body)})")
        t = subs[target]
        _check(date >= dt.datetime.utcfromtimestamp(t["created_utc"]).strftime("%Y-%m-%d"), f"comment {key} before its post")
        created = max(_day_epoch(date) + rng.randrange(0, 86400), t["created_utc"] + rng.randrange(600, 6 * 3600))
        comments[key] = {
            "author": author,
            "body": body,
            "created_utc": created,
            "id": "f" + _b36(_h("com", key), 6),
            "link_id": "t3_" + t["id"],
            "parent_id": "t3_" + t["id"],
            "score": 1 if author == "AutoModerator" else rng.choice([1, 2, 2, 3, 4, 5, 7, 9, 12, 15, 22, 31, 48]),
            "subreddit": t["subreddit"],
            "distinguished": "moderator" if author == "AutoModerator" else None,
            "edited": False,
        }
        t["num_comments"] += 1
    for key, (author, parent, date, body) in REDDIT_REPLIES.items():
        p = comments[parent]
        created = max(_day_epoch(date) + rng.randrange(0, 86400), p["created_utc"] + 1800)
        comments[key] = dict(p, author=author, body=body, created_utc=created, id="f" + _b36(_h("com", key), 6),
                             parent_id="t1_" + p["id"], score=rng.choice([3, 4, 6]), edited=False)
        subs[REDDIT_COMMENTS[parent][1]]["num_comments"] += 1
    _check(len({c["id"] for c in comments.values()}) == len(comments), "comment id collision")
    for s in subs.values():
        s["num_comments"] += rng.randrange(0, 25)
    # noise: int-epoch edit on one comment, string created_utc on another
    comments["c_p_s2"]["edited"] = comments["c_p_s2"]["created_utc"] + 2 * 3600 + 41
    comments["c_t_b1"]["created_utc"] = str(comments["c_t_b1"]["created_utc"])

    with open(d / "submissions.ndjson", "w", encoding="utf-8", newline="\n") as f:
        for s in sorted(subs.values(), key=lambda r: int(r["created_utc"])):
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    raw = "".join(json.dumps(c, ensure_ascii=False) + "\n"
                  for c in sorted(comments.values(), key=lambda r: int(r["created_utc"])))
    (d / "comments.ndjson.zst").write_bytes(zstandard.ZstdCompressor(level=10).compress(raw.encode("utf-8")))


def write_twitter(out: Path) -> None:
    rng = random.Random(SEED + 2)
    d = out / "twitter"
    d.mkdir(parents=True, exist_ok=True)
    start = dt.datetime(2009, 4, 6, 22, 19, 45)
    end = dt.datetime(2009, 6, 25, 10, 28, 31)
    span = (end - start).total_seconds()
    id0, id1 = 1467810369, 2329205009
    rows = []
    for user, tweets in TWEETS.items():
        offs = sorted(rng.uniform(0, span) for _ in tweets)
        for (pol, text), off in zip(tweets, offs):
            _check(40 <= len(text) <= 140, f"tweet length {len(text)}: {text}")
            _check('"' not in text and "\n" not in text, f"bad char in tweet: {text}")
            ts = start + dt.timedelta(seconds=int(off))
            tid = id0 + int(off / span * (id1 - id0)) + rng.randrange(0, 997)
            rows.append((pol, tid, ts.strftime("%a %b %d %H:%M:%S PDT %Y"), "NO_QUERY", user, text))
    _check(len({r[1] for r in rows}) == len(rows), "tweet id collision")
    rows.sort(key=lambda r: (r[0], r[1]))  # Sentiment140 order: polarity 0 block, then 4, by id
    with open(d / "sentiment140_demo.csv", "w", encoding="utf-8", newline="") as f:
        for r in rows:
            f.write(",".join(f'"{v}"' for v in r) + "\r\n")


def _blog_bytes(posts, encoding: str) -> bytes:
    parts = ["<Blog>\r\n\r\n"]
    for date, text in posts:
        if text:
            _check(200 <= len(text) <= 900, f"blog post length {len(text)}: {text[:40]}")
        parts.append(f"<date>{date}</date>\r\n<post>\r\n\r\n   {text}\r\n\r\n</post>\r\n\r\n")
    parts.append("</Blog>\r\n")
    return "".join(parts).encode(encoding)


def write_blogger(out: Path) -> None:
    d = out / "blogger"
    d.mkdir(parents=True, exist_ok=True)
    for stem, posts in BLOGS.items():
        _check(all(t.isascii() for _, t in posts), f"non-ascii in {stem}")
        (d / f"{stem}.xml").write_bytes(_blog_bytes(posts, "utf-8"))
    for stem, posts in BLOGS_LATIN1.items():
        (d / f"{stem}.xml").write_bytes(_blog_bytes(posts, "cp1252"))


SUBCAT = {
    "K1": "Cookware", "K2": "Coffee, Tea & Espresso", "K3": "Mixing Bowls", "K4": "Cookware", "K5": "Cutlery & Knife Accessories",
    "K6": "Kitchen Utensils & Gadgets", "K7": "Cutting Boards", "K8": "Small Appliances", "K9": "Bakeware", "K10": "Travel & To-Go Drinkware",
    "B1": "Literature & Fiction", "B2": "Science Fiction & Fantasy", "B3": "Biographies & Memoirs", "B4": "Cookbooks, Food & Wine",
    "B5": "Literature & Fiction", "B6": "Mystery, Thriller & Suspense", "B7": "Sports & Outdoors", "B8": "Biographies & Memoirs",
    "B9": "Science & Math", "B10": "Literature & Fiction",
    "O1": "Tents", "O2": "Sleeping Bags", "O3": "Trekking Poles", "O4": "Camp Kitchen", "O5": "Lights & Lanterns",
    "O6": "Water Filters", "O7": "Backpacks", "O8": "Camping Furniture", "O9": "Sleeping Pads", "O10": "Clothing",
}


def _asin(key: str, cat: str, salt: str = "") -> str:
    n = _h("asin", key, salt)
    if cat == "books" and not salt:
        return str(n % 10 ** 9).zfill(9)[:1].replace("0", "1") + str(n % 10 ** 9).zfill(9)
    return "B0" + _b36(n, 8).upper()


def write_amazon(out: Path) -> None:
    rng = random.Random(SEED + 3)
    d = out / "amazon"
    d.mkdir(parents=True, exist_ok=True)
    per_cat = {}
    for key, it in ITEMS.items():
        per_cat.setdefault(it[0], []).append(key)
    _check(all(len(v) >= 8 for v in per_cat.values()) and len(per_cat) == 3, "need >= 8 items in 3 categories")
    _check(len({it[1] for it in ITEMS.values()}) == len(ITEMS), "item titles must be distinct")
    parent = {k: _asin(k, ITEMS[k][0]) for k in ITEMS}
    variants = {k: [_asin(k, ITEMS[k][0], salt=v) for v in vs] for k, vs in VARIANT_PARENTS.items()}

    meta_lines = []
    for key, (cat, title, store, price, features, desc, details) in ITEMS.items():
        main_cat, path = CATEGORY_META[cat]
        meta_lines.append({
            "main_category": main_cat,
            "title": title,
            "average_rating": round(rng.uniform(3.8, 4.8), 1),
            "rating_number": rng.randrange(40, 18000),
            "features": features,
            "description": desc,
            "price": price,
            "store": store,
            "categories": path + [SUBCAT[key]],
            "details": dict(details, **({"Size": ", ".join(VARIANT_PARENTS[key])} if key in VARIANT_PARENTS else {})),
            "parent_asin": parent[key],
        })
    reviews = []
    for user, (_persona, revs) in REVIEWS.items():
        for key, rating, date, title, text in revs:
            _check(len(text) >= 100, f"review text too short: {text[:40]}")
            ts = (_day_epoch(date) + rng.randrange(0, 86400)) * 1000 + rng.randrange(0, 1000)
            asin = rng.choice(variants[key]) if key in variants else parent[key]
            rec = {
                "rating": float(rating),
                "title": title,
                "text": text,
                "images": [],
                "asin": asin,
                "parent_asin": parent[key],
                "user_id": user,
                "timestamp": ts,
                "helpful_vote": rng.choice([0, 0, 0, 1, 1, 2, 3, 5, 8, 14]),
                "verified_purchase": rng.random() > 0.12,
            }
            reviews.append(rec)
            if (user, key) == DUPLICATE_VARIANT_REVIEW:
                other = [a for a in variants[key] if a != asin][0]
                reviews.append(dict(rec, asin=other))
    reviews.sort(key=lambda r: (r["timestamp"], r["asin"]))
    with open(d / "reviews_Demo.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for r in reviews:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(d / "meta_Demo.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for m in meta_lines:
            f.write(json.dumps(m, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    write_reddit(args.out)
    write_twitter(args.out)
    write_blogger(args.out)
    write_amazon(args.out)
    print(f"demo corpus written to {args.out}")


if __name__ == "__main__":
    main()
