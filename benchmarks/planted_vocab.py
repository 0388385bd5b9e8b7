"""The words of the planted heads (``benchmarks/planted_heads.py``), written for the benchmark:
the pairs of each operation, and the noise a planted table's outputs are padded with.

Each operation is a string of ``source>target`` words (no spaces inside a word); copying lists
words that map to themselves. Words are bare here: the tables add a BPE tokenizer's leading
space to most of them.
"""

from __future__ import annotations


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_PAIRS = {
    "copying": """house water river music garden window people morning number family system table
        paper money market doctor letter street animal power summer winter report office forest
        island bottle engine planet silver lantern compass harbor velvet meadow thunder
        pebble saddle marble candle ladder basket pillow feather anchor carpet kettle mirror cabin
        ribbon quilt barrel wagon tunnel cactus walrus""",
    "country_to_capital": """France>Paris Germany>Berlin Italy>Rome Spain>Madrid Portugal>Lisbon
        Japan>Tokyo China>Beijing Russia>Moscow Egypt>Cairo Greece>Athens Poland>Warsaw
        Austria>Vienna Sweden>Stockholm Norway>Oslo Finland>Helsinki Denmark>Copenhagen
        Ireland>Dublin Hungary>Budapest Kenya>Nairobi Peru>Lima Cuba>Havana Thailand>Bangkok
        Vietnam>Hanoi Iran>Tehran Iraq>Baghdad Turkey>Ankara Canada>Ottawa Australia>Canberra
        Belgium>Brussels Netherlands>Amsterdam Ukraine>Kyiv Ghana>Accra Morocco>Rabat
        Indonesia>Jakarta Philippines>Manila Korea>Seoul Bolivia>Sucre""",
    "country_to_language": """France>French Germany>German Italy>Italian Spain>Spanish
        Portugal>Portuguese Japan>Japanese China>Chinese Russia>Russian Greece>Greek Poland>Polish
        Sweden>Swedish Norway>Norwegian Finland>Finnish Denmark>Danish Hungary>Hungarian
        Turkey>Turkish Netherlands>Dutch Brazil>Portuguese Mexico>Spanish Egypt>Arabic
        Iran>Persian Israel>Hebrew Thailand>Thai Vietnam>Vietnamese Korea>Korean India>Hindi
        Ukraine>Ukrainian Romania>Romanian Indonesia>Indonesian Austria>German Pakistan>Urdu
        Bangladesh>Bengali Kenya>Swahili Afghanistan>Pashto Belarus>Belarusian Wales>Welsh
        Catalonia>Catalan Switzerland>German""",
    "past_tense": """walk>walked talk>talked jump>jumped play>played work>worked look>looked
        want>wanted call>called ask>asked move>moved live>lived open>opened go>went see>saw
        take>took give>gave come>came eat>ate write>wrote run>ran sing>sang drink>drank
        think>thought bring>brought buy>bought catch>caught teach>taught find>found make>made
        say>said tell>told know>knew grow>grew fly>flew begin>began swim>swam speak>spoke
        break>broke choose>chose breed>bred cling>clung fling>flung sling>slung wring>wrung slink>slunk
        stride>strode strive>strove weave>wove tread>trod forsake>forsook forbid>forbade
        shrink>shrank kneel>knelt leap>leapt dwell>dwelt slay>slew flee>fled juggle>juggled
        whistle>whistled wander>wandered hammer>hammered borrow>borrowed scribble>scribbled
        tremble>trembled polish>polished""",
    "plural": """cat>cats dog>dogs house>houses car>cars tree>trees book>books city>cities
        baby>babies box>boxes church>churches knife>knives leaf>leaves wolf>wolves man>men
        woman>women child>children mouse>mice foot>feet tooth>teeth goose>geese person>people
        bus>buses glass>glasses dish>dishes story>stories party>parties country>countries
        hero>heroes potato>potatoes tomato>tomatoes table>tables chair>chairs window>windows
        apple>apples bird>birds horse>horses""",
    "present_participle": """walk>walking talk>talking play>playing read>reading sing>singing
        eat>eating drink>drinking sleep>sleeping think>thinking build>building run>running
        swim>swimming sit>sitting stop>stopping begin>beginning get>getting make>making
        write>writing take>taking come>coming dance>dancing drive>driving ride>riding lie>lying
        die>dying tie>tying see>seeing fly>flying go>going cook>cooking jump>jumping""",
    "comparative": """big>bigger small>smaller tall>taller short>shorter long>longer fast>faster
        slow>slower old>older young>younger strong>stronger weak>weaker hot>hotter cold>colder
        warm>warmer cheap>cheaper rich>richer poor>poorer happy>happier easy>easier early>earlier
        heavy>heavier busy>busier large>larger wide>wider safe>safer nice>nicer good>better
        bad>worse far>farther high>higher low>lower dark>darker bright>brighter clever>cleverer
        cruel>crueler shy>shyer stiff>stiffer tidy>tidier vast>vaster""",
    "english_to_french": """cat>chat dog>chien house>maison water>eau bread>pain book>livre
        car>voiture tree>arbre sun>soleil moon>lune sea>mer city>ville day>jour night>nuit
        man>homme woman>femme child>enfant friend>ami love>amour world>monde time>temps life>vie
        hand>main head>tête heart>cœur school>école door>porte window>fenêtre red>rouge
        green>vert white>blanc black>noir small>petit big>grand apple>pomme cheese>fromage
        mushroom>champignon snail>escargot squirrel>écureuil owl>hibou thunder>tonnerre knee>genou
        elbow>coude shoulder>épaule tongue>langue cheek>joue chin>menton pillow>oreiller
        hammer>marteau nail>clou wheel>roue castle>château""",
    "successor": """1>2 2>3 3>4 4>5 5>6 6>7 7>8 8>9 9>10 10>11 Monday>Tuesday Tuesday>Wednesday
        Wednesday>Thursday Thursday>Friday Friday>Saturday Saturday>Sunday Sunday>Monday
        January>February February>March March>April April>May May>June June>July July>August
        August>September September>October October>November November>December December>January
        first>second second>third third>fourth fourth>fifth fifth>sixth sixth>seventh
        seventh>eighth eighth>ninth ninth>tenth""",
    "antonym": """hot>cold good>bad big>small tall>short fast>slow happy>sad light>dark rich>poor
        old>new strong>weak hard>soft open>closed early>late up>down in>out left>right true>false
        love>hate win>lose buy>sell push>pull begin>end alive>dead empty>full clean>dirty wet>dry
        thick>thin loud>quiet high>low inside>outside cheap>expensive friend>enemy
        humble>arrogant accept>reject arrive>depart increase>decrease victory>defeat""",
    "male_to_female": """king>queen prince>princess man>woman boy>girl father>mother son>daughter
        brother>sister uncle>aunt husband>wife nephew>niece he>she him>her his>her actor>actress
        waiter>waitress god>goddess hero>heroine duke>duchess emperor>empress lord>lady
        gentleman>lady monk>nun groom>bride male>female dad>mom grandfather>grandmother
        grandson>granddaughter boyfriend>girlfriend bull>cow rooster>hen stallion>mare""",
    "uppercase": """cat>CAT dog>DOG yes>YES no>NO ok>OK usa>USA nasa>NASA html>HTML api>API
        the>THE and>AND new>NEW red>RED big>BIG top>TOP max>MAX min>MIN end>END run>RUN
        stop>STOP go>GO help>HELP json>JSON xml>XML sql>SQL cpu>CPU url>URL pdf>PDF usb>USB
        faq>FAQ""",
    "animal_to_young": """cat>kitten dog>puppy cow>calf horse>foal sheep>lamb goat>kid pig>piglet
        duck>duckling goose>gosling hen>chick swan>cygnet frog>tadpole bear>cub lion>cub
        tiger>cub deer>fawn kangaroo>joey owl>owlet eagle>eaglet elephant>calf whale>calf
        seal>pup wolf>pup fox>kit rabbit>bunny butterfly>caterpillar hare>leveret fish>fry
        dolphin>calf giraffe>calf""",
}


def _pair(word: str) -> tuple[str, str]:
    source, _, target = word.partition(">")
    return source, target or source


PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    name: tuple(_pair(w) for w in _split(text)) for name, text in _PAIRS.items()
}
"""Each operation's (source, target) words, bare (no leading space)."""

SUBWORDS = tuple(
    " " + w
    for w in _split(
        """the and of to in a is that for it with as on was which this from by at be or an but
    not are have they we you one all there been would can also some when what so if about out into
    only like just over such than its"""
    )
) + _split("ing ed er ly tion s es al ment ness able re un pre ation ist ive ous ful less")
"""Common English tokens and suffixes (a space starts a word)."""

FRAGMENTS = _split(
    "abl ish ify ward ize ance ence ity ism ian ular ical ated ating ings ers ies ory ure ogy ph qu "
    "str th ch sh ck pt nt rd mb ough ight eous tch ght"
)
PUNCTUATION = (
    ",",
    ".",
    ";",
    ":",
    "!",
    "?",
    "'s",
    "'",
    '"',
    "(",
    ")",
    " (",
    " -",
    "--",
    "...",
    ' "',
    "\n",
    " ,",
    "\u2019",
    "\u2013",
    " \u2014",
    "\n\n",
    " ...",
)
CODE = _split(
    "() (); { } => == != -> :: [] __ 0x </ /> #! \\n += && || elif def self. return import const "
    "null var int str .py <div args kwargs printf"
) + (" {", " =", " self", " null", " return", "\t")
MULTILINGUAL = _split(
    "的 是 了 の に は を ción ungen schaft ский ого ة ال ไม่ ของ में के 된 하는 ação ção mente lich keit "
    "ijk één ğı ış του και że ów"
)
_WORDS = {w.lower() for pairs in PAIRS.values() for pair in pairs for w in pair}
JUNK = tuple(
    t
    for t in dict.fromkeys(SUBWORDS + FRAGMENTS + PUNCTUATION + CODE + MULTILINGUAL)
    if t.strip().lower() not in _WORDS
)
"""The noise of a junk head's sources and outputs: no word of any operation."""
