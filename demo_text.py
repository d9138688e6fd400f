"""Sentence bank of the embedded demo corpus (demo_corpus.py).

Every sentence was written for this project (no third-party text). Each line is
`intended valence | sentence`, valence on the MSP-Podcast 1-7 scale
(1 very negative, 4 neutral, 7 very positive). The bank spans clearly negative,
neutral and positive content and lengths from about 5 to 20 words, so that a
sentence read by eSpeak NG lasts roughly 2 to 8 seconds.

    from demo_text import SENTENCES   # list of (text, valence)
"""

_BANK = """
# ---- negative ----
1.5 | This is the worst day I have had in years.
1.5 | I can't believe they lied to us again.
1.5 | Everything I worked for is gone, and nobody even cares.
1.5 | He broke his promise, and now I have nothing left.
1.5 | The doctor called with terrible news about my father.
1.5 | I hate how they treat people who can't defend themselves.
1.5 | We lost the house in the fire last night.
1.5 | My best friend stopped talking to me without any reason.
1.5 | They fired half the team right before the holidays.
1.5 | I'm sick of being ignored every single time I speak.
1.5 | That was the most humiliating moment of my whole life.
1.5 | The accident left him unable to walk for months.
1.5 | Our dog died this morning, and the kids are heartbroken.
1.5 | Nobody came to help when we really needed it.
1.5 | I feel completely alone and I don't know what to do.
1.5 | They stole my bag with my passport and all my money.
1.5 | The whole project failed because of one careless mistake.
1.5 | Honestly, I'm furious that you would say that to my face.
1.5 | Stop it right now, I have had enough of your excuses.
1.5 | Every plan we made fell apart, one after another.
2.0 | I waited three hours and they still cancelled the flight.
2.0 | The rent went up again and my salary did not.
2.0 | I'm really disappointed in how this season turned out.
2.0 | The meeting was a disaster from start to finish.
2.0 | My car broke down on the highway in the pouring rain.
2.0 | I studied for weeks and still failed the exam.
2.0 | She never apologized for what she did to us.
2.0 | The food was cold, the room was dirty, and the staff were rude.
2.0 | I don't trust him anymore after what happened.
2.0 | We argued all night and nothing got resolved.
2.0 | It hurts to see how much the town has declined.
2.0 | They keep raising prices while the service gets worse.
2.0 | I lost my wallet and my phone on the same day.
2.0 | The news tonight was grim, as it has been all week.
2.0 | Why does every repair in this house cost a fortune?
2.0 | I'm tired of cleaning up other people's messes.
2.0 | The team played terribly and the fans were booing.
2.0 | He yelled at me in front of the entire office.
2.0 | I missed my sister's wedding because of the storm.
2.0 | Nothing I try seems to make any difference.
2.0 | The landlord refuses to fix the broken heating.
2.0 | I feel guilty for not calling my mother more often.
2.0 | That movie was a complete waste of time and money.
2.0 | Our neighbors were shouting again until three in the morning.
2.0 | We were treated like criminals at the border.
2.0 | The hospital lost my test results for the second time.
2.0 | I regret every word I said to him that night.
2.0 | My hands were shaking because I was so afraid.
2.0 | I'm scared that something bad is going to happen.
2.0 | The layoffs have left everyone anxious and bitter.
2.5 | I'm a bit worried about the results next week.
2.5 | The traffic this morning made me late again.
2.5 | It's annoying when the internet keeps dropping out.
2.5 | I didn't sleep well, and I feel awful today.
2.5 | The weather ruined our picnic this afternoon.
2.5 | He forgot my birthday, which stung a little.
2.5 | My knee has been hurting ever since the race.
2.5 | The train was crowded and it smelled terrible.
2.5 | I wish they had told us about the changes earlier.
2.5 | Our offer on the apartment was rejected.
2.5 | Customer support kept me on hold for an hour.
2.5 | The printer jammed right before my presentation.
2.5 | I'm frustrated that we keep having the same argument.
2.5 | The coffee machine is broken, and it's only Monday.
2.5 | I'm nervous about speaking in front of so many people.
2.5 | We had to cancel the trip because my son got sick.
2.5 | The new policy makes our work much harder.
2.5 | I'm lonely since my roommate moved away.
2.5 | The store was out of everything I needed.
2.5 | I can't find the keys, and we're already late.
2.5 | My phone screen cracked when I dropped it on the stairs.
2.5 | That comment really got under my skin.
2.5 | It bothers me that nobody asked for my opinion.
2.5 | The garden flooded after the heavy rain.
2.5 | We lost the game in the very last minute.
2.5 | I feel uneasy about walking home alone at night.
2.5 | The package arrived damaged and half of it was missing.
2.5 | My boss rejected the idea without even reading it.
2.5 | Prices at the grocery store are getting ridiculous.
2.5 | I'm afraid we won't finish on time.
3.0 | The report is late, and that is a problem.
3.0 | I'm not thrilled about working this weekend.
3.0 | The hotel was fine, but the walls were really thin.
3.0 | It rained the whole time we were on vacation.
3.0 | I'm slightly annoyed that the bus skipped our stop.
3.0 | The soup was too salty to finish.
3.0 | My flight is delayed by forty minutes.
3.0 | We have too many meetings and not enough time to work.
3.0 | The movie started well but the ending was disappointing.
3.0 | I have a headache from staring at the screen all day.
3.0 | The neighbors' dog barks every time we open the door.
3.0 | The coffee here used to be much better.
3.0 | I'm still waiting for an answer about the refund.
3.0 | My plants are dying and I don't know why.
3.0 | Parking downtown is always a nightmare.
3.0 | The instructions were confusing and incomplete.
3.0 | He's been in a bad mood all week.
3.0 | I miss the way things used to be around here.
3.0 | The old bridge is going to be closed for a year.
3.0 | Nobody laughed at my joke during dinner.
3.0 | Tickets sold out before I could buy one.
3.0 | The heater makes a strange noise at night.
3.0 | I'm worried my grandmother is not eating enough.
3.0 | The battery died halfway through the call.
3.0 | My favorite cafe closed down last month.
3.0 | I spilled coffee all over my notes this morning.
3.0 | The line at the post office barely moved.
3.0 | We had another small argument about money.
3.0 | I think I'm coming down with a cold.
3.0 | The schedule changed again without any warning.
# ---- neutral ----
4.0 | The meeting starts at nine in the small conference room.
4.0 | I usually take the bus to work on Tuesdays.
4.0 | The library closes at six on weekdays.
4.0 | We need to buy milk, bread and some eggs.
4.0 | The report has three sections and an appendix.
4.0 | My brother lives in a small town near the coast.
4.0 | The train to the city leaves every twenty minutes.
4.0 | I'm going to the store after lunch.
4.0 | The package should arrive sometime on Thursday.
4.0 | She works as an accountant at a local firm.
4.0 | The museum is on the other side of the river.
4.0 | Please send me the file when you have a moment.
4.0 | The recipe calls for two cups of flour.
4.0 | We moved the desk closer to the window.
4.0 | The next episode covers the history of the region.
4.0 | I read an article about bridges this morning.
4.0 | The office is on the fourth floor of the building.
4.0 | He drives a gray car with a small dent in the door.
4.0 | The forecast says it will be cloudy tomorrow.
4.0 | There are about thirty people on the mailing list.
4.0 | The store rearranged the shelves over the weekend.
4.0 | We usually have dinner around seven.
4.0 | The form asks for your name, address and phone number.
4.0 | The guest today works in urban planning.
4.0 | The road to the airport goes past the old factory.
4.0 | My appointment was moved to Wednesday afternoon.
4.0 | The class covers statistics and basic programming.
4.0 | I keep my notes in a blue folder on the shelf.
4.0 | The park has a running track and two tennis courts.
4.0 | The bakery opens at six in the morning.
4.0 | They painted the hallway a light shade of green.
4.0 | The survey takes about ten minutes to complete.
4.0 | Most of the team works from home on Fridays.
4.0 | The cable goes into the port on the back.
4.0 | We walked to the station and took the next train.
4.0 | The book is divided into twelve short chapters.
4.0 | He ordered a sandwich and a glass of water.
4.0 | The city council meets on the first Monday of each month.
4.0 | The lecture was recorded and posted online.
4.0 | I need to renew my driver's license this year.
4.0 | The kitchen faces east, so it gets the morning light.
4.0 | We discussed the budget for the next quarter.
4.0 | The bus stop is across the street from the bank.
4.0 | The company was founded about forty years ago.
4.0 | You can find the instructions on the second page.
4.0 | The water boils after about five minutes.
4.0 | My neighbor is a retired teacher.
4.0 | The meeting notes are in the shared folder.
4.0 | We planted tomatoes along the fence.
4.0 | The show airs on Sunday evenings.
4.0 | The bridge was built in the early nineteen hundreds.
4.0 | Let's go over the plan one more time.
4.0 | I think the store is closed on public holidays.
4.0 | The printer is next to the kitchen on this floor.
4.0 | The population of the town is around twenty thousand.
4.0 | Most people in the survey were between thirty and fifty.
4.0 | The river runs through the center of the valley.
4.0 | I have a call at two and another one at four.
4.0 | The coffee is on the top shelf in the cupboard.
4.0 | We'll talk about the election in the second half.
4.0 | The tickets can be picked up at the front desk.
4.0 | The software update will install overnight.
4.0 | My cousin studies chemistry at the university.
4.0 | The hallway light switches off after five minutes.
4.0 | They usually spend the summer at their cabin.
4.0 | The documents need two signatures before Friday.
4.0 | The map shows three routes to the lake.
4.0 | The new schedule begins in September.
4.0 | I'll put the boxes in the garage for now.
4.0 | The market sells fruit, vegetables and fresh fish.
4.0 | Our guest has been a journalist for many years.
4.0 | The store is about a ten minute walk from here.
4.0 | We'll meet at the corner of Main Street and Oak Avenue.
4.0 | The chairs are stacked in the back of the room.
4.0 | He prefers tea in the morning and coffee after lunch.
4.0 | The application asks for two references.
4.0 | The building has an elevator and two staircases.
4.0 | Next week we'll look at a different question.
4.0 | The manual describes how to reset the device.
4.0 | The trail is about six kilometers long.
4.0 | I'm going to check the numbers again tomorrow.
4.0 | The clock in the kitchen is five minutes fast.
4.0 | This episode was recorded last Thursday.
4.0 | The shop on the corner sells newspapers and stamps.
4.0 | The committee will vote on the proposal next month.
4.0 | The keys are on the hook by the front door.
4.0 | We usually shop for groceries on Saturday morning.
4.0 | The phone number is printed on the back of the card.
4.0 | The files are sorted by date and then by name.
4.0 | The conference takes place in a hotel downtown.
4.5 | The weather should be mild for most of the week.
4.5 | I think the new layout is a bit easier to read.
4.5 | We finished the first draft ahead of the deadline.
4.5 | The room is quiet, which makes it good for studying.
4.5 | The bus was on time for once.
4.5 | The new chairs in the office are fairly comfortable.
3.5 | The parking lot is full again this morning.
3.5 | I'm not sure the plan will work as expected.
3.5 | It will probably rain later this afternoon.
3.5 | The line at the bank was longer than usual.
3.5 | We still have a few problems to sort out.
3.5 | The store moved the milk to the back again.
# ---- positive ----
5.0 | The new cafe downtown makes pretty good coffee.
5.0 | I had a nice walk along the river after work.
5.0 | The kids enjoyed the museum more than I expected.
5.0 | The meeting went better than I thought it would.
5.0 | It's nice to have a quiet evening at home.
5.0 | The soup was warm and just what I needed.
5.0 | We got a small discount on the new couch.
5.0 | The weather cleared up in time for the game.
5.0 | My neighbor brought over some fresh bread.
5.0 | I finally found a jacket that fits well.
5.0 | The team made good progress this week.
5.0 | The train was quiet, so I got some reading done.
5.0 | The garden is starting to look really nice.
5.0 | I'm glad we decided to take the scenic route.
5.0 | The new schedule gives us more free time.
5.0 | The repair was quicker and cheaper than expected.
5.0 | Our guest today has some interesting stories to share.
5.0 | I like the new color of the kitchen.
5.0 | The doctor said my results look fine.
5.0 | I enjoyed the concert in the park last night.
5.0 | The store had exactly what I was looking for.
5.0 | It was good to catch up with old friends.
5.0 | The children were polite and helpful all day.
5.0 | We found a comfortable hotel close to the beach.
5.0 | The presentation went smoothly this morning.
5.0 | I'm pleased with how the painting turned out.
5.0 | The class was interesting and easy to follow.
5.0 | The flowers on the balcony are finally blooming.
5.0 | My sister called to say hello this afternoon.
5.0 | The landlord fixed the heater right away.
5.5 | I'm happy with how the project came together.
5.5 | The dinner last night was really delicious.
5.5 | We had a great time at the lake this weekend.
5.5 | My son learned to ride his bike today.
5.5 | The new job is going really well so far.
5.5 | I love the way the city looks in the evening.
5.5 | The audience laughed and clapped all through the show.
5.5 | She smiled and thanked everyone for coming.
5.5 | It's wonderful to finally have some sunshine.
5.5 | The volunteers did a fantastic job with the cleanup.
5.5 | Our team won the game in the last minute.
5.5 | I'm really grateful for all the help you gave me.
5.5 | The hike was beautiful, with views all the way to the sea.
5.5 | We're excited to welcome a new member to the family.
5.5 | The bakery's new pastries are absolutely delicious.
5.5 | My grandmother is feeling much better now.
5.5 | The kids built an amazing sand castle at the beach.
5.5 | I'm proud of how hard everyone worked this year.
5.5 | The new park is full of families and laughter.
5.5 | This is one of the best books I've read in a long time.
5.5 | Our neighbors invited us over for a lovely dinner.
5.5 | Everyone at the party was friendly and relaxed.
5.5 | The trip to the mountains was refreshing.
5.5 | It feels good to finish a long week of work.
5.5 | My friend surprised me with tickets to the concert.
5.5 | The class gave the teacher a big round of applause.
5.5 | I love cooking dinner with my family on Sundays.
5.5 | The festival brought the whole town together.
5.5 | We found the perfect apartment close to the park.
5.5 | The puppy has brought so much joy into our home.
5.5 | The garden produced more tomatoes than we can eat.
5.5 | The new library is bright, quiet and beautiful.
5.5 | I'm looking forward to the holidays with my family.
5.5 | He finally passed his driving test on the third try.
5.5 | The sunset over the water was breathtaking.
5.5 | We celebrated my parents' anniversary with a big dinner.
5.5 | My coworkers threw me a surprise party.
5.5 | The charity raised more money than ever before.
5.5 | The baby laughed for the first time today.
5.5 | The music at the wedding was fantastic.
6.0 | I got the job, and I start next Monday!
6.0 | We won the championship after ten long years!
6.0 | This is the happiest I have felt in a long time.
6.0 | She said yes, and we're getting married in the spring!
6.0 | The surgery was a complete success.
6.0 | Our daughter was accepted to her dream school.
6.0 | I can't stop smiling after such a wonderful day.
6.0 | The whole family came home for the holidays.
6.0 | We finally paid off the loan on the house.
6.0 | That was the best concert I have ever been to.
6.0 | Our team broke the record by a huge margin.
6.0 | I'm thrilled that the book is finally published.
6.0 | The kids were overjoyed when they saw the puppy.
6.0 | Everyone cheered when the results were announced.
6.0 | We're going to be parents, and we couldn't be happier.
6.0 | My best friend is coming to visit next week!
6.0 | The doctors say he is completely cured.
6.0 | I love you all, thank you for this amazing night.
6.0 | We finally made it to the top, and the view was incredible.
6.0 | The whole neighborhood came together to help us rebuild.
6.0 | I just heard the best news of the year.
6.0 | This vacation has been absolutely perfect.
6.0 | Our little shop had its best month ever.
6.0 | The reunion was full of laughter and hugs.
6.0 | I passed every exam with flying colors.
6.5 | This is a dream come true for our whole family.
6.5 | We did it, we actually did it, I'm so proud of us!
6.5 | I have never been so happy in my entire life.
6.5 | The baby is healthy, and everyone is doing great.
6.5 | Winning this award means the world to me.
6.5 | What a beautiful, perfect day to celebrate together!
6.5 | Thank you so much, this is the nicest gift I've ever received.
6.5 | We're finally home, safe and sound, and together again.
6.5 | You made my year, and I can't thank you enough.
6.5 | It was pure joy from the first minute to the last.
"""


def _parse(bank):
    out = []
    for line in bank.strip().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        val, text = line.split("|", 1)
        out.append((text.strip(), float(val)))
    return out


SENTENCES = _parse(_BANK)  # [(text, intended valence 1-7), ...]
