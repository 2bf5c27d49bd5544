"""Synthetic data at the case study's scale, for load tests and benchmarks (`microblog seed`).

What it builds, deterministically from one random seed (times are relative to the run):
- users `<adjective>_<noun><id>` with ids 1..N, all with the password SEED_PASSWORD, hashed once
  with the default (production) hasher; most seen recently, a share not seen for over 30 days;
- a skewed follow graph: user 1 is followed by `top_followers` users, the others' followers
  follow a Zipf-like law over popularity rank (user 2 most popular after user 1, then a long
  tail); out-degrees are log-normal; no self-follows, no duplicates, exactly `follows` rows;
- `posts` top-level posts plus replies (`reply_share` of all posts) spread over the last `days`
  days, with Snowflake ids made from their times (core.ids layout), strictly increasing in time;
  replies are newer than their parents and concentrate on a few popular threads;
- hashtags: the texts' own endings give one top-level post in five one of four common tags
  (#monday, #tech, #food, #running); `add_hashtags` then ends one top-level post in twelve and
  one reply in twenty-five with one to three tags drawn from a Zipf law over a vocabulary that
  grows with the preset (a long tail used once or twice); about 28% of top-level posts carry a
  tag, as on the large networks (15-30%). Stored as the app stores them
  (`tags_tag`, `tags_posttag` in post order, names from core.text.hashtags), the search index
  filled (PostgreSQL: the GIN index rebuilt with the posts' other indexes; SQLite: the FTS5
  table's triggers), and the trending list computed once at the end;
- likes (`likes_per_post` per post, replies included) and reposts (`reposts_per_post` per
  top-level post), concentrated on popular posts, each some time after its post, with ids made
  from their times and written in id order as the app writes them; one per (user, post);
- exact counters, `is_celebrity` above FANOUT_CELEBRITY_FOLLOWERS, and the stored feeds the
  fan-out would have written (timelines.fanout): every active reader gets the newest
  FEED_MAX_ENTRIES of their own and their followed non-celebrity authors' top-level posts, with
  `feed_horizon` at the oldest kept entry when the cap cut the feed; inactive readers get none;
  likewise their followed non-celebrities' (and their own) reposts (RepostEntry);
- mentions: a reply often opens with `@<parent's author>` (40%), and MENTION_SHARE of top-level
  posts mention an account drawn by popularity; each is stored as post_create stores it
  (`mention_names`, Mention rows), with the notifications post_create writes (a reply to its
  parent's author, a mention to the others; none to oneself). The seed has no blocks or mutes,
  so every such notification is one that timelines.visibility.notified_by lets through.

On PostgreSQL the rows go in with COPY inside one transaction, with the four tables' secondary
indexes and foreign keys dropped first and recreated afterwards from their catalog definitions
(exactly what the migrations made), then ANALYZE. Elsewhere (SQLite) plain bulk inserts.
"""

import math
import random
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any, TextIO

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.hashers import make_password
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django_tasks_db.models import DBTaskResult

from microblog.accounts.models import User, UserSession
from microblog.core.ids import EPOCH_MS, LOW_BITS
from microblog.core.text import hashtags
from microblog.follows.models import Follow
from microblog.interactions.models import Like, Repost
from microblog.notifications.models import (
    Kind,
    Notification,
    NotificationMarker,
    PendingNotification,
)
from microblog.posts.models import CONTENT_MAX_LENGTH, Mention, Post
from microblog.tags.models import PostTag, Tag, Trend
from microblog.timelines.models import FeedEntry, RepostEntry

# Every seeded account signs in with this password (load tests rely on it).
SEED_PASSWORD = "seeded-password-1"  # noqa: S105

DAY_MS = 86_400_000
# Top-level posts that mention someone (replies mention their parent's author on their own).
MENTION_SHARE = 0.03


@dataclass(frozen=True)
class SeedConfig:
    users: int
    follows: int
    posts: int  # top-level posts; replies come on top (reply_share of all posts)
    top_followers: int | None = None  # followers of user 1; default 94% of users
    reply_share: float = 0.3
    inactive_share: float = 0.2
    days: int = 90
    random_seed: int = 1
    # Likes per post (replies included) and reposts per top-level post, on average: on the big
    # networks likes outnumber posts several times and reposts are a fraction of posts.
    likes_per_post: float = 3.0
    reposts_per_post: float = 0.3
    now_ms: int | None = None  # the run's "now"; None means the wall clock

    @property
    def replies(self) -> int:
        return round(self.posts * self.reply_share / (1 - self.reply_share))

    def top(self) -> int:
        if self.top_followers is not None:
            return self.top_followers
        return min(self.users - 1, self.follows // 2, round(self.users * 0.94))


PRESETS = {
    "small": SeedConfig(users=1_000, follows=25_000, posts=3_000),
    "medium": SeedConfig(users=100_000, follows=5_000_000, posts=200_000),
    "seed": SeedConfig(users=1_091_000, follows=50_368_293, posts=73_817, top_followers=1_027_000),
}


class SeedError(Exception):
    pass


# --- Progress ----------------------------------------------------------------------------


class Progress:
    """A one-line progress bar with rate and ETA (redrawn in place on a terminal, a line every
    few seconds otherwise)."""

    def __init__(self, label: str, total: int, stream: TextIO | None, unit: str = "rows") -> None:
        self.label, self.total, self.stream, self.unit = label, max(total, 1), stream, unit
        self.done = 0
        self.start = self.last = time.monotonic()
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= (0.5 if self.tty else 5.0):
            self.last = now
            self._draw(final=False)

    def close(self) -> None:
        self._draw(final=True)

    def _draw(self, *, final: bool) -> None:
        if self.stream is None:
            return
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        share = min(self.done / self.total, 1.0)
        bar = "#" * int(share * 24)
        eta = (self.total - self.done) / rate if rate > 0 and not final else 0.0
        line = (
            f"{self.label:<16} [{bar:<24}] {self.done:>12,}/{self.total:,} {share:6.1%} "
            f"{_human(rate)} {self.unit}/s  "
            + (f"in {_clock(elapsed)}" if final else f"ETA {_clock(eta)}")
        )
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _human(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:6.2f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:6.1f}k"
    return f"{rate:7.0f}"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# --- Text --------------------------------------------------------------------------------

ADJECTIVES = [
    "quiet",
    "brave",
    "sunny",
    "lazy",
    "clever",
    "rapid",
    "gentle",
    "bold",
    "happy",
    "misty",
    "silver",
    "golden",
    "cosmic",
    "tiny",
    "wild",
    "calm",
    "fuzzy",
    "noble",
    "witty",
    "lucky",
    "crimson",
    "amber",
    "swift",
    "sleepy",
    "jolly",
    "urban",
    "rustic",
    "polar",
]
NOUNS = [
    "falcon",
    "otter",
    "maple",
    "river",
    "comet",
    "panda",
    "cedar",
    "harbor",
    "pixel",
    "lantern",
    "badger",
    "willow",
    "meadow",
    "tiger",
    "quartz",
    "robin",
    "canyon",
    "ember",
    "walrus",
    "birch",
    "orbit",
    "fox",
    "heron",
    "summit",
    "kettle",
    "sparrow",
]
SUBJECTS = [
    "the new café downtown",
    "my sourdough starter",
    "this week's release",
    "the morning commute",
    "our team's standup",
    "the city marathon",
    "a rainy Sunday",
    "the last episode",
    "my garden",
    "remote work",
    "the local library",
    "this old laptop",
    "the football match",
    "my cat",
    "the farmers market",
    "a good book",
    "the concert last night",
    "public transport",
    "spring cleaning",
    "the code review",
    "my first 10k run",
    "the museum exhibit",
    "street food",
    "the hiking trail",
]
OPINIONS = [
    "is honestly underrated",
    "made my whole day",
    "was a total surprise",
    "needs more attention",
    "is better than I expected",
    "could use some improvements",
    "deserves a sequel",
    "is back in style",
    "took way longer than planned",
    "was worth every minute",
    "is my new favourite thing",
    "keeps getting better",
    "is not what it used to be",
    "still confuses me",
]
TAILS = [
    "",
    "!",
    ".",
    ", change my mind.",
    ". Thoughts?",
    ", no regrets.",
    " 🎉",
    " :)",
    ". More soon.",
    " #monday",
    " #tech",
    " #food",
    " #running",
    ". Who's with me?",
    ", just saying.",
    " (again).",
]
OPENERS = [
    "",
    "Just realised that ",
    "Hot take: ",
    "Reminder: ",
    "TIL ",
    "Honestly, ",
    "Unpopular opinion: ",
    "Can confirm: ",
    "PSA: ",
    "Small win today: ",
    "Not gonna lie, ",
]
REPLIES = [
    "Totally agree!",
    "Haha, same here.",
    "Wait, really?",
    "This is the way.",
    "Couldn't have said it better.",
    "Interesting, tell me more.",
    "Hard disagree, but respect.",
    "Love this!",
    "Source?",
    "I tried that last week and it worked.",
    "Saving this for later.",
    "100%",
    "Not sure about that one.",
    "Congrats!",
    "Thanks for sharing.",
]
BIOS = [
    "",
    "",
    "",
    "Coffee, code and long walks.",
    "Photographer. Cyclist. Dog person.",
    "Writing about cities and the people in them.",
    "Here for the memes.",
    "Building things on the internet.",
    "Runner, reader, occasional baker.",
    "Opinions are my cat's.",
    "Music nerd and tea drinker.",
]


def _post_text(rng: random.Random) -> str:
    text = (
        rng.choice(OPENERS) + rng.choice(SUBJECTS) + " " + rng.choice(OPINIONS) + rng.choice(TAILS)
    )
    if rng.random() < 0.3:
        text += " " + rng.choice(OPENERS) + rng.choice(SUBJECTS) + " " + rng.choice(OPINIONS) + "."
    return (text[0].upper() + text[1:])[:CONTENT_MAX_LENGTH]


def _reply_text(rng: random.Random, parent_author: str) -> str:
    text = rng.choice(REPLIES)
    if rng.random() < 0.4:
        text = f"@{parent_author} {text}"
    if rng.random() < 0.3:
        text += " " + _post_text(rng)
    return text[:CONTENT_MAX_LENGTH]


# The head of the tag vocabulary; the tail is `<word><n>` names (core.text's rule: letters,
# digits, underscores, at most 50 characters).
TAG_WORDS = [
    "news",
    "music",
    "python",
    "photography",
    "travel",
    "food",
    "coffee",
    "running",
    "books",
    "football",
    "gaming",
    "art",
    "science",
    "climate",
    "cycling",
    "design",
    "movies",
    "tech",
    "django",
    "opensource",
    "cats",
    "dogs",
    "weekend",
    "mondaymotivation",
    "throwbackthursday",
    "café",
    "日本",
    "música",
    "straßenbahn",
    "привет",
]
TAGGED_POST_SHARE = 1 / 12
TAGGED_REPLY_SHARE = 1 / 25


def tag_vocabulary(cfg: "SeedConfig") -> list[str]:
    size = max(len(TAG_WORDS), (cfg.posts + cfg.replies) // 25)
    return TAG_WORDS + [f"{TAG_WORDS[n % len(TAG_WORDS)]}{n}" for n in range(len(TAG_WORDS), size)]


def add_hashtags(cfg: "SeedConfig", generated: "Generated") -> None:
    """Appends hashtags to a share of the posts (see the module's docstring). Its own random
    stream, so the rest of the data is what the same seed gave before tags existed."""
    rng = random.Random(cfg.random_seed * 1_000_003 + 16)
    vocabulary = tag_vocabulary(cfg)
    cum_weights = _zipf_cum_weights(len(vocabulary), exponent=1.1, offset=2.0)
    for post in generated.posts:
        share = TAGGED_POST_SHARE if post.parent_id is None else TAGGED_REPLY_SHARE
        if rng.random() >= share:
            continue
        count = rng.choices((1, 2, 3), weights=(70, 22, 8))[0]
        names = dict.fromkeys(rng.choices(vocabulary, cum_weights=cum_weights, k=count))
        for name in names:
            written = name if rng.random() < 0.8 else name.capitalize()
            if len(post.content) + 2 + len(written) <= CONTENT_MAX_LENGTH:
                post.content += " #" + written


def _tag_rows(generated: "Generated") -> tuple[list[tuple[int, str]], list[tuple[int, int]]]:
    """Tag rows (id, name) and post-tag rows (tag_id, post_id) in post order, as post_create
    would have stored them (the same extraction)."""
    ids: dict[str, int] = {}
    links: list[tuple[int, int]] = []
    for post in generated.posts:
        if "#" not in post.content:
            continue
        for name in hashtags(post.content):
            tag_id = ids.setdefault(name, len(ids) + 1)
            links.append((tag_id, post.id))
    return [(tag_id, name) for name, tag_id in ids.items()], links


def _load_tags(loader: "Loader", generated: "Generated", summary: "Summary") -> None:
    tags, links = _tag_rows(generated)
    loader.rows(TAGS, ["id", "name"], tags)
    summary.post_tags = loader.rows(POST_TAGS, ["tag_id", "post_id"], links)
    summary.tags = len(tags)


def username_of(user_id: int) -> str:
    return f"{ADJECTIVES[user_id * 7 % len(ADJECTIVES)]}_{NOUNS[user_id % len(NOUNS)]}{user_id}"


# --- Generation --------------------------------------------------------------------------


def _zipf_cum_weights(n: int, exponent: float = 1.0, offset: float = 10.0) -> list[float]:
    return list(accumulate((rank + offset) ** -exponent for rank in range(n)))


def _out_degrees(cfg: SeedConfig, rng: random.Random, top_set: bytearray) -> array:
    """How many accounts each user follows: log-normal, scaled to sum to exactly cfg.follows."""
    n = cfg.users
    mean = cfg.follows / n
    sigma = 1.0
    mu = math.log(max(mean, 1e-9)) - sigma * sigma / 2
    raw = [rng.lognormvariate(mu, sigma) for _ in range(n + 1)]
    raw[0] = 0.0
    scale = cfg.follows / max(sum(raw), 1e-9)
    # Anyone may follow every other user, except that only user 1's chosen followers follow it.
    caps = array("l", [n - 1 if u == 1 or top_set[u] else n - 2 for u in range(n + 1)])
    degrees = array("l", [0] * (n + 1))
    for u in range(1, n + 1):
        degrees[u] = min(caps[u], max(top_set[u], round(raw[u] * scale)))
    diff = cfg.follows - sum(degrees)
    if diff > sum(caps) - caps[0] - sum(degrees):
        raise SeedError("too many follows for this many users")
    while diff != 0:
        u = rng.randint(1, n)
        if diff > 0 and degrees[u] < caps[u]:
            step = min(diff, caps[u] - degrees[u], max(1, diff // n))
            degrees[u] += step
            diff -= step
        elif diff < 0 and degrees[u] > top_set[u]:
            step = min(-diff, degrees[u] - top_set[u], max(1, -diff // n))
            degrees[u] -= step
            diff += step
    return degrees


@dataclass
class Graph:
    followers: array
    following: array


def generate_follows(
    cfg: SeedConfig, rng: random.Random, emit: Callable[[int, list[int]], None], progress: Progress
) -> Graph:
    """Calls emit(follower_id, sorted followed ids) for every user, in id order."""
    n = cfg.users
    top = cfg.top()
    top_set = bytearray(n + 1)
    for u in rng.sample(range(2, n + 1), top):
        top_set[u] = 1
    degrees = _out_degrees(cfg, rng, top_set)
    # Users 2..n by popularity rank (user 2 most popular); user 1's followers are fixed above.
    population = range(2, n + 1)
    cum = _zipf_cum_weights(n - 1, offset=max(10.0, n / 100_000))
    choices = rng.choices
    followers = array("l", [0] * (n + 1))
    following = array("l", [0] * (n + 1))
    for u in range(1, n + 1):
        k = degrees[u] - top_set[u]
        candidates = n - 1 - (1 if u != 1 else 0)  # not self, not user 1
        if k * 2 > candidates:  # dense (tiny data sets): sample uniformly
            chosen = set(rng.sample([v for v in population if v != u], k))
        else:
            chosen = set(choices(population, cum_weights=cum, k=k))
            chosen.discard(u)
            while len(chosen) < k:
                chosen.update(choices(population, cum_weights=cum, k=k - len(chosen)))
                chosen.discard(u)
        if top_set[u]:
            chosen.add(1)
        ids = sorted(chosen)
        for v in ids:
            followers[v] += 1
        following[u] = len(ids)
        emit(u, ids)
        progress.update(len(ids))
    progress.close()
    return Graph(followers=followers, following=following)


@dataclass
class PostRow:
    id: int
    author_id: int
    content: str
    parent_id: int | None
    created_ms: int
    replies_count: int = 0
    mentioned: list[int] = field(default_factory=list)  # user ids, as post_create resolves them
    likes_count: int = 0
    reposts_count: int = 0


@dataclass
class Generated:
    now_ms: int
    posts: list[PostRow] = field(default_factory=list)
    posts_count: array | None = None
    likes: list[tuple[int, int, int, datetime]] = field(default_factory=list)  # id, user, post, at
    reposts: list[tuple[int, int, int, datetime]] = field(default_factory=list)


def generate_interactions(cfg: SeedConfig, generated: Generated) -> None:
    """Likes and reposts for the generated posts (their counts set on the posts): each by a
    random user on a post drawn from a Zipf law over a shuffled order (a few posts collect most
    of them), some time after the post (an exponential wait, mean 6 hours, before now), once
    per (user, post). Its own random stream, so adding it changed none of the other data."""
    rng = random.Random(cfg.random_seed * 7919 + 17)
    now_ms = generated.now_ms
    posts = generated.posts
    top_level = [p for p in posts if p.parent_id is None]
    used_ids: set[int] = set()
    for kind, pool, count in (
        ("likes", posts, round(len(posts) * cfg.likes_per_post)),
        ("reposts", top_level, round(len(top_level) * cfg.reposts_per_post)),
    ):
        if not pool or not count:
            continue
        order = list(range(len(pool)))
        rng.shuffle(order)
        cum = _zipf_cum_weights(len(pool), offset=5.0)
        picks = rng.choices(range(len(pool)), cum_weights=cum, k=count)
        users = rng.choices(range(1, cfg.users + 1), k=count)
        seen: set[tuple[int, int]] = set()
        rows: list[tuple[int, int, int, datetime]] = []
        for pick, user in zip(picks, users, strict=True):
            post = pool[order[pick]]
            if (user, post.id) in seen:
                continue  # one like (or repost) per user and post
            seen.add((user, post.id))
            ms = min(post.created_ms + 1 + int(rng.expovariate(1 / 21_600_000)), now_ms - 1)
            row_id = ((ms - EPOCH_MS) << LOW_BITS) | rng.getrandbits(LOW_BITS - 1)
            while row_id in used_ids:
                row_id += 1
            used_ids.add(row_id)
            rows.append((row_id, user, post.id, _ts(ms)))
            if kind == "likes":
                post.likes_count += 1
            else:
                post.reposts_count += 1
        rows.sort()  # in id order, as the app inserts them
        if kind == "likes":
            generated.likes = rows
        else:
            generated.reposts = rows


def generate_posts(cfg: SeedConfig, rng: random.Random, now_ms: int) -> Generated:
    n = cfg.users
    start_ms = now_ms - cfg.days * DAY_MS
    # Who posts: mostly a Zipf law over a shuffled order (prolific posters are not necessarily
    # popular), plus a share by popularity rank (popular accounts post too).
    order = list(range(1, n + 1))
    rng.shuffle(order)
    cum_any = cum_popular = _zipf_cum_weights(n, offset=max(10.0, n / 100_000))
    authors = [
        (rng.choices(range(1, n + 1), cum_weights=cum_popular)[0])
        if rng.random() < 0.05
        else order[rng.choices(range(n), cum_weights=cum_any)[0]]
        for _ in range(cfg.posts)
    ]
    top_ms = sorted(rng.randrange(start_ms, now_ms - 60_000) for _ in range(cfg.posts))
    # (ms, author, parent index or -1, text); parents are indexes into this list.
    items: list[list[Any]] = [
        [ms, author, -1, _post_text(rng)] for ms, author in zip(top_ms, authors, strict=True)
    ]
    if items and cfg.replies:
        threads = list(range(len(items)))
        rng.shuffle(threads)
        cum_threads = _zipf_cum_weights(len(threads), offset=5.0)
        repliers = rng.choices(range(1, n + 1), k=cfg.replies)
        for replier in repliers:
            if len(items) > cfg.posts and rng.random() < 0.2:
                parent = rng.randrange(cfg.posts, len(items))  # a reply to a reply
            else:
                parent = threads[rng.choices(range(len(threads)), cum_weights=cum_threads)[0]]
            parent_ms = items[parent][0]
            ms = min(parent_ms + int(rng.expovariate(1 / 3_600_000)) + 1, now_ms - 1_000)
            ms = max(ms, parent_ms + 1)
            text = _reply_text(rng, username_of(items[parent][1]))
            items.append([ms, replier, parent, text])
    # Ids from times: sorted by time, each id made from its millisecond, strictly increasing.
    order_by_time = sorted(range(len(items)), key=lambda i: (items[i][0], i))
    ids = [0] * len(items)
    last = 0
    for i in order_by_time:
        candidate = ((items[i][0] - EPOCH_MS) << LOW_BITS) | rng.getrandbits(LOW_BITS - 1)
        last = candidate if candidate > last else last + 1
        ids[i] = last
    result = Generated(now_ms=now_ms, posts_count=array("l", [0] * (n + 1)))
    rows = [
        PostRow(
            id=ids[i],
            author_id=items[i][1],
            content=items[i][3],
            parent_id=ids[items[i][2]] if items[i][2] >= 0 else None,
            created_ms=items[i][0],
        )
        for i in range(len(items))
    ]
    for i, item in enumerate(items):
        if item[2] >= 0:
            rows[item[2]].replies_count += 1
        result.posts_count[item[1]] += 1  # type: ignore[index]
        parent_id = rows[i].parent_id
        assert parent_id is None or parent_id < rows[i].id
    _add_mentions(cfg, rows, items, cum_popular)
    result.posts = sorted(rows, key=lambda r: r.id)
    return result


def _add_mentions(
    cfg: SeedConfig, rows: list[PostRow], items: list[list[Any]], cum_popular: list[float]
) -> None:
    """Mentions, from their own random stream (the other data stay as they were without them):
    a reply that opens with `@<parent's author>` mentions them; MENTION_SHARE of top-level posts
    get an `@<account>` drawn by popularity in front."""
    rng = random.Random(cfg.random_seed * 1_000_003 + 16)
    n = cfg.users
    for i, row in enumerate(rows):
        if row.parent_id is not None:
            parent_author = items[items[i][2]][1]
            if row.content.startswith(f"@{username_of(parent_author)} "):
                row.mentioned = [parent_author]
        elif rng.random() < MENTION_SHARE:
            target = rng.choices(range(1, n + 1), cum_weights=cum_popular)[0]
            row.content = f"@{username_of(target)} {row.content}"[:CONTENT_MAX_LENGTH]
            row.mentioned = [target]


def _mention_rows(generated: "Generated") -> Iterator[tuple[Any, ...]]:
    for p in generated.posts:
        for user_id in p.mentioned:
            yield (p.id, user_id)


def _notification_rows(generated: "Generated") -> Iterator[tuple[Any, ...]]:
    """What notifications.services.notify_post_created writes for each post: the parent's
    author is told of a reply, the other accounts mentioned of the mention; never oneself."""
    authors = {p.id: p.author_id for p in generated.posts}
    next_id = 1
    for p in generated.posts:
        told: dict[int, str] = {m: Kind.MENTION.value for m in p.mentioned}
        if p.parent_id is not None:
            told[authors[p.parent_id]] = Kind.REPLY.value
        told.pop(p.author_id, None)
        for recipient, kind in sorted(told.items()):
            created = _ts(p.created_ms)
            yield (next_id, recipient, kind, p.id, p.id, p.author_id, 1, p.id, created)
            next_id += 1


# --- Loading -----------------------------------------------------------------------------


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _copy_text(value: object) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


class Loader:
    """Writes rows in batches: COPY on PostgreSQL, executemany elsewhere."""

    batch = 50_000

    def __init__(self) -> None:
        self.postgres = connection.vendor == "postgresql"

    def rows(self, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]) -> int:
        count = 0
        if self.postgres:
            with (
                connection.cursor() as cursor,
                cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                buffer: list[str] = []
                for row in rows:
                    buffer.append("\t".join(map(_copy_text, row)) + "\n")
                    if len(buffer) >= self.batch:
                        copy.write("".join(buffer))
                        count += len(buffer)
                        buffer = []
                if buffer:
                    copy.write("".join(buffer))
                    count += len(buffer)
            return count
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})"
        )
        with connection.cursor() as cursor:
            chunk: list[tuple[Any, ...]] = []
            for row in rows:
                chunk.append(tuple(_sqlite_value(v) for v in row))
                if len(chunk) >= self.batch:
                    cursor.executemany(sql, chunk)
                    count += len(chunk)
                    chunk = []
            if chunk:
                cursor.executemany(sql, chunk)
                count += len(chunk)
        return count


def _sqlite_value(value: object) -> object:
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    return value


class PostgresSchema:
    """Drops the indexes and constraints that slow a bulk load, and recreates them from the
    definitions PostgreSQL reports for them (what the migrations made)."""

    def __init__(self, tables: list[str], keep_primary: set[str]) -> None:
        self.tables, self.keep_primary = tables, keep_primary
        self.constraints: list[tuple[str, str, str, str]] = []  # table, name, type, definition
        self.indexes: list[tuple[str, str]] = []  # name, definition

    def drop(self) -> None:
        with connection.cursor() as cursor:
            for table in self.tables:
                cursor.execute(
                    "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = %s::regclass AND contype IN ('p', 'u', 'f') ORDER BY conname",
                    [table],
                )
                for name, kind, definition in cursor.fetchall():
                    if kind == "p" and table in self.keep_primary:
                        continue
                    self.constraints.append((table, name, kind, definition))
                cursor.execute(
                    "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass "
                    "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid "
                    "AND k.contype IN ('p', 'u')) ORDER BY c.relname",
                    [table],
                )
                self.indexes += cursor.fetchall()
            for table, name, _, _ in sorted(self.constraints, key=lambda c: c[2] != "f"):
                cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            for name, _ in self.indexes:
                cursor.execute(f'DROP INDEX "{name}"')

    def restore(self, tables: list[str], report: Callable[[str, float], None]) -> None:
        """Recreates what was dropped on `tables`: keys, then indexes, then foreign keys."""
        with connection.cursor() as cursor:
            for table, name, kind, definition in self.constraints:
                if table in tables and kind in ("p", "u"):
                    started = time.monotonic()
                    cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
                    report(f"{table}: {name}", time.monotonic() - started)
            for name, definition in self.indexes:
                table = definition.split(" ON ", 1)[1].split()[0].split(".")[-1]
                if table in tables:
                    started = time.monotonic()
                    cursor.execute(definition)
                    report(f"{table}: {name}", time.monotonic() - started)
            for table, name, kind, definition in self.constraints:
                if table in tables and kind == "f":
                    started = time.monotonic()
                    cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
                    report(f"{table}: {name}", time.monotonic() - started)


# --- The whole run -----------------------------------------------------------------------

USERS = User._meta.db_table
FOLLOWS = Follow._meta.db_table
POSTS = Post._meta.db_table
FEED = FeedEntry._meta.db_table
TAGS = Tag._meta.db_table
POST_TAGS = PostTag._meta.db_table
MENTIONS = Mention._meta.db_table
NOTIFICATIONS = Notification._meta.db_table
LIKES = Like._meta.db_table
REPOSTS = Repost._meta.db_table
REPOST_FEED = RepostEntry._meta.db_table
RESET_MODELS: list[type[models.Model]] = [
    Trend,
    PostTag,
    Tag,
    Notification,
    PendingNotification,
    NotificationMarker,
    Mention,
    FeedEntry,
    RepostEntry,
    Like,
    Repost,
    Follow,
    Post,
    LogEntry,
    UserSession,
    DBTaskResult,
    User.groups.through,
    User.user_permissions.through,
    User,
]


def database_is_empty() -> bool:
    return not (
        User.objects.exists()
        or Post.objects.exists()
        or Follow.objects.exists()
        or Like.objects.exists()
        or Repost.objects.exists()
    )


def reset_database() -> None:
    """Empties the app's tables (users, posts, follows, feeds, sessions, jobs)."""
    tables = [model._meta.db_table for model in RESET_MODELS]
    statements = connection.ops.sql_flush(
        no_style(), tables, reset_sequences=True, allow_cascade=True
    )
    with transaction.atomic(), connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


@dataclass
class Summary:
    users: int = 0
    follows: int = 0
    posts: int = 0
    replies: int = 0
    mentions: int = 0
    notifications: int = 0
    feed_entries: int = 0
    likes: int = 0
    reposts: int = 0
    repost_entries: int = 0
    active_users: int = 0
    celebrities: int = 0
    capped_feeds: int = 0
    tags: int = 0
    post_tags: int = 0
    top_accounts: list[tuple[str, int]] = field(default_factory=list)
    steps: list[tuple[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def seed(cfg: SeedConfig, *, stream: TextIO | None = sys.stderr) -> Summary:
    """Fills an empty database. Raises SeedError if it is not empty."""
    if cfg.users < 2:
        raise SeedError("need at least 2 users")
    if cfg.follows > cfg.users * (cfg.users - 1):
        raise SeedError(f"{cfg.users} users can have at most {cfg.users * (cfg.users - 1)} follows")
    if not 0 <= cfg.top() <= min(cfg.users - 1, cfg.follows):
        raise SeedError("top_followers must be between 0 and min(users - 1, follows)")
    if not database_is_empty():
        raise SeedError("the database is not empty (use --reset to empty it first)")
    started = time.monotonic()
    summary = Summary()

    def step(label: str, seconds: float) -> None:
        summary.steps.append((label, seconds))
        if stream is not None:
            stream.write(f"  {label}: {seconds:.1f}s\n")
            stream.flush()

    now_ms = cfg.now_ms if cfg.now_ms is not None else int(time.time() * 1000)
    if connection.vendor == "postgresql":
        with transaction.atomic():
            _seed_postgres(cfg, now_ms, summary, step, stream)
        with connection.cursor() as cursor:
            for table in (
                USERS,
                FOLLOWS,
                POSTS,
                FEED,
                TAGS,
                POST_TAGS,
                LIKES,
                REPOSTS,
                REPOST_FEED,
            ):
                t0 = time.monotonic()
                cursor.execute(f"VACUUM ANALYZE {table}")
                step(f"vacuum analyze {table}", time.monotonic() - t0)
    else:
        with transaction.atomic():
            _seed_portable(cfg, now_ms, summary, step, stream)
    _trending(step)
    _describe(summary)
    summary.seconds = time.monotonic() - started
    return summary


def _user_rows(
    cfg: SeedConfig, rng: random.Random, now_ms: int, graph: Graph, posts_count: array
) -> Iterator[tuple[Any, ...]]:
    password = make_password(SEED_PASSWORD)  # once: hashing a million times would take days
    threshold = settings.FANOUT_CELEBRITY_FOLLOWERS
    now = _ts(now_ms)
    for u in range(1, cfg.users + 1):
        if rng.random() < cfg.inactive_share:
            seen_ms = now_ms - int(rng.uniform(31, 2 * cfg.days + 31) * DAY_MS)
        else:
            seen_ms = now_ms - min(int(rng.expovariate(1 / (2 * DAY_MS))), 28 * DAY_MS)
        joined_ms = now_ms - cfg.days * DAY_MS - int(rng.uniform(1, 700) * DAY_MS)
        yield (
            u,
            password,
            None,
            False,
            username_of(u),
            "",
            False,
            True,
            _ts(joined_ms),
            rng.choice(BIOS),
            graph.followers[u],
            graph.following[u],
            posts_count[u],
            _ts(seen_ms),
            graph.followers[u] > threshold,
            0,
            now,
        )


USER_COLUMNS = [
    "id",
    "password",
    "last_login",
    "is_superuser",
    "username",
    "email",
    "is_staff",
    "is_active",
    "date_joined",
    "description",
    "followers_count",
    "following_count",
    "posts_count",
    "last_seen_at",
    "is_celebrity",
    "feed_horizon",
    "updated_at",
]
POST_COLUMNS = [
    "id",
    "author_id",
    "content",
    "parent_id",
    "replies_count",
    "created_at",
    "mention_names",
    "likes_count",
    "reposts_count",
]
MENTION_COLUMNS = ["post_id", "user_id"]
NOTIFICATION_COLUMNS = [
    "id",
    "recipient_id",
    "kind",
    "group_key",
    "post_id",
    "actor_id",
    "count",
    "sort_id",
    "updated_at",
]
INTERACTION_COLUMNS = ["id", "user_id", "post_id", "created_at"]


def _post_rows(generated: Generated) -> Iterator[tuple[Any, ...]]:
    for p in generated.posts:
        names = " ".join(username_of(user_id) for user_id in p.mentioned)
        yield (
            p.id,
            p.author_id,
            p.content,
            p.parent_id,
            p.replies_count,
            _ts(p.created_ms),
            names,
            p.likes_count,
            p.reposts_count,
        )


def _load_mentions(loader: "Loader", generated: Generated, summary: "Summary") -> None:
    summary.mentions = loader.rows(MENTIONS, MENTION_COLUMNS, _mention_rows(generated))
    summary.notifications = loader.rows(
        NOTIFICATIONS, NOTIFICATION_COLUMNS, _notification_rows(generated)
    )


def _load_interactions(loader: "Loader", generated: Generated, summary: "Summary") -> None:
    summary.likes = loader.rows(LIKES, INTERACTION_COLUMNS, generated.likes)
    summary.reposts = loader.rows(REPOSTS, INTERACTION_COLUMNS, generated.reposts)


def _follow_times(rng: random.Random, now_ms: int, days: int) -> list[str]:
    return [_ts(now_ms - int(rng.uniform(0, 3 * days) * DAY_MS)).isoformat() for _ in range(997)]


def _seed_postgres(
    cfg: SeedConfig,
    now_ms: int,
    summary: Summary,
    step: Callable[[str, float], None],
    stream: TextIO | None,
) -> None:
    rng = random.Random(cfg.random_seed)
    loader = Loader()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SET LOCAL synchronous_commit = off")
    schema = PostgresSchema(
        [USERS, POSTS, FOLLOWS, FEED, MENTIONS, NOTIFICATIONS, LIKES, REPOSTS, REPOST_FEED],
        keep_primary={USERS, POSTS},
    )
    t0 = time.monotonic()
    schema.drop()
    step("drop indexes and foreign keys", time.monotonic() - t0)

    # Follows, streamed straight from the generator into COPY.
    times = _follow_times(rng, now_ms, cfg.days)
    progress = Progress("follows", cfg.follows, stream)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            f"COPY {FOLLOWS} (follower_id, followed_id, created_at) FROM STDIN"
        ) as copy,
    ):
        buffer: list[str] = []
        pending = 0

        def emit(u: int, ids: list[int]) -> None:
            nonlocal pending
            tail = f"\t{times[u % len(times)]}\n"
            prefix = f"{u}\t"
            buffer.append("".join([prefix + str(v) + tail for v in ids]))
            pending += len(ids)
            if pending >= 200_000:
                copy.write("".join(buffer))
                buffer.clear()
                pending = 0

        graph = generate_follows(cfg, rng, emit, progress)
        if buffer:
            copy.write("".join(buffer))
    summary.follows = cfg.follows

    t0 = time.monotonic()
    generated = generate_posts(cfg, rng, now_ms)
    add_hashtags(cfg, generated)
    generate_interactions(cfg, generated)
    step(f"generate {len(generated.posts):,} posts with likes and reposts", time.monotonic() - t0)
    assert generated.posts_count is not None
    progress = Progress("users", cfg.users, stream)
    summary.users = loader.rows(
        USERS,
        USER_COLUMNS,
        _counting(_user_rows(cfg, rng, now_ms, graph, generated.posts_count), progress),
    )
    progress.close()
    progress = Progress("posts", len(generated.posts), stream)
    loader.rows(POSTS, POST_COLUMNS, _counting(_post_rows(generated), progress))
    progress.close()
    t0 = time.monotonic()
    _load_interactions(loader, generated, summary)
    step(f"{summary.likes:,} likes, {summary.reposts:,} reposts", time.monotonic() - t0)
    summary.posts = len(generated.posts)
    summary.replies = sum(1 for p in generated.posts if p.parent_id is not None)
    t0 = time.monotonic()
    _load_tags(loader, generated, summary)
    step(f"load {summary.tags:,} tags and {summary.post_tags:,} post tags", time.monotonic() - t0)
    t0 = time.monotonic()
    _load_mentions(loader, generated, summary)
    step(
        f"{summary.mentions:,} mentions, {summary.notifications:,} notifications",
        time.monotonic() - t0,
    )
    del generated, graph

    schema.restore([USERS, POSTS, FOLLOWS, MENTIONS, NOTIFICATIONS, LIKES, REPOSTS], step)
    with connection.cursor() as cursor:
        for table in (USERS, POSTS, FOLLOWS, MENTIONS, NOTIFICATIONS, LIKES, REPOSTS):
            t0 = time.monotonic()
            cursor.execute(f"ANALYZE {table}")
            step(f"analyze {table}", time.monotonic() - t0)
    _build_feeds(now_ms, step)
    schema.restore([FEED, REPOST_FEED], step)
    _set_horizons(step)
    _reset_sequences()


def _counting(rows: Iterable[tuple[Any, ...]], progress: Progress) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        progress.update(1)
        yield row


def _seed_portable(
    cfg: SeedConfig,
    now_ms: int,
    summary: Summary,
    step: Callable[[str, float], None],
    stream: TextIO | None,
) -> None:
    rng = random.Random(cfg.random_seed)
    loader = Loader()
    times = _follow_times(rng, now_ms, cfg.days)
    follows: list[tuple[int, int, str]] = []

    def emit(u: int, ids: list[int]) -> None:
        created = times[u % len(times)]
        follows.extend((u, v, created) for v in ids)

    graph = generate_follows(cfg, rng, emit, Progress("follows", cfg.follows, stream))
    generated = generate_posts(cfg, rng, now_ms)
    add_hashtags(cfg, generated)
    generate_interactions(cfg, generated)
    assert generated.posts_count is not None
    summary.users = loader.rows(
        USERS, USER_COLUMNS, _user_rows(cfg, rng, now_ms, graph, generated.posts_count)
    )
    summary.posts = loader.rows(POSTS, POST_COLUMNS, _post_rows(generated))
    _load_tags(loader, generated, summary)
    _load_interactions(loader, generated, summary)
    summary.replies = sum(1 for p in generated.posts if p.parent_id is not None)
    summary.follows = loader.rows(
        FOLLOWS,
        ["follower_id", "followed_id", "created_at"],
        ((u, v, datetime.fromisoformat(created)) for u, v, created in follows),
    )
    _load_mentions(loader, generated, summary)
    _build_feeds(now_ms, step)
    _set_horizons(step)
    _reset_sequences()


def _build_feeds(now_ms: int, step: Callable[[str, float], None]) -> None:
    """Every active reader's stored feed, in one set-based statement: the newest
    FEED_MAX_ENTRIES of their own and their followed non-celebrity authors' top-level posts
    (which posts a feed may hold: timelines.visibility)."""
    from microblog.timelines.visibility import stored_in_feeds_sql

    cutoff = connection.ops.adapt_datetimefield_value(
        _ts(now_ms) - timedelta(days=settings.FANOUT_INACTIVE_DAYS)
    )
    t0 = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {FEED} (user_id, post_id, author_id)
            SELECT user_id, post_id, author_id FROM (
                SELECT c.user_id, c.post_id, c.author_id,
                       ROW_NUMBER() OVER (PARTITION BY c.user_id ORDER BY c.post_id DESC) AS rn
                FROM (
                    SELECT f.follower_id AS user_id, p.id AS post_id, p.author_id AS author_id
                    FROM {FOLLOWS} f
                    JOIN {USERS} a ON a.id = f.followed_id AND a.is_celebrity = %s
                    JOIN {POSTS} p
                      ON p.author_id = f.followed_id AND {stored_in_feeds_sql("p")}
                    JOIN {USERS} r ON r.id = f.follower_id AND r.last_seen_at >= %s
                    UNION ALL
                    SELECT p.author_id, p.id, p.author_id
                    FROM {POSTS} p JOIN {USERS} r ON r.id = p.author_id
                    WHERE {stored_in_feeds_sql("p")} AND r.last_seen_at >= %s
                ) AS c
            ) AS ranked
            WHERE rn <= %s
            """,
            [False, cutoff, cutoff, settings.FEED_MAX_ENTRIES],
        )
        rows = cursor.rowcount
    step(f"build {rows:,} feed entries", time.monotonic() - t0)
    # Reposts: of followed non-celebrities and one's own, the newest FEED_MAX_ENTRIES reposted
    # posts per reader (DENSE_RANK: every reposter of a kept post is kept, so the feed is
    # complete from its oldest entry up, which _set_horizons relies on).
    t0 = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {REPOST_FEED} (user_id, post_id, reposter_id, author_id)
            SELECT user_id, post_id, reposter_id, author_id FROM (
                SELECT c.*, DENSE_RANK() OVER (
                    PARTITION BY c.user_id ORDER BY c.post_id DESC) AS rn
                FROM (
                    SELECT f.follower_id AS user_id, x.post_id, x.user_id AS reposter_id,
                           p.author_id
                    FROM {REPOSTS} x
                    JOIN {USERS} a ON a.id = x.user_id AND a.is_celebrity = %s
                    JOIN {FOLLOWS} f ON f.followed_id = x.user_id
                    JOIN {USERS} r ON r.id = f.follower_id AND r.last_seen_at >= %s
                    JOIN {POSTS} p ON p.id = x.post_id AND {stored_in_feeds_sql("p")}
                    UNION ALL
                    SELECT x.user_id, x.post_id, x.user_id, p.author_id
                    FROM {REPOSTS} x
                    JOIN {USERS} r ON r.id = x.user_id AND r.last_seen_at >= %s
                    JOIN {POSTS} p ON p.id = x.post_id AND {stored_in_feeds_sql("p")}
                ) AS c
            ) AS ranked
            WHERE rn <= %s
            """,
            [False, cutoff, cutoff, settings.FEED_MAX_ENTRIES],
        )
        rows = cursor.rowcount
    step(f"build {rows:,} repost entries", time.monotonic() - t0)


def _set_horizons(step: Callable[[str, float], None]) -> None:
    """As fanout.rebuild: a feed holding FEED_MAX_ENTRIES entries is complete only from its
    oldest entry up."""
    t0 = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {USERS} SET feed_horizon = (
                SELECT MIN(e.post_id) FROM {FEED} e WHERE e.user_id = {USERS}.id
            )
            WHERE id IN (
                SELECT user_id FROM {FEED} GROUP BY user_id HAVING COUNT(*) >= %s
            )
            """,
            [settings.FEED_MAX_ENTRIES],
        )
        rows = cursor.rowcount
        # A capped repost feed: complete from its oldest entry up; the higher horizon wins.
        higher = "GREATEST" if connection.vendor == "postgresql" else "MAX"
        cursor.execute(
            f"""
            UPDATE {USERS} SET feed_horizon = {higher}(feed_horizon, (
                SELECT MIN(e.post_id) FROM {REPOST_FEED} e WHERE e.user_id = {USERS}.id
            ))
            WHERE id IN (
                SELECT user_id FROM {REPOST_FEED} GROUP BY user_id
                HAVING COUNT(DISTINCT post_id) >= %s
            )
            """,
            [settings.FEED_MAX_ENTRIES],
        )
        rows += cursor.rowcount
    step(f"set {rows:,} feed horizons", time.monotonic() - t0)


def _trending(step: Callable[[str, float], None]) -> None:
    from microblog.tags.services import trending_refresh

    t0 = time.monotonic()
    trending_refresh()
    step("trending tags", time.monotonic() - t0)


def _reset_sequences() -> None:
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), [User, Tag, Notification]):
            cursor.execute(sql)


def _describe(summary: Summary) -> None:
    summary.feed_entries = FeedEntry.objects.count()
    summary.repost_entries = RepostEntry.objects.count()
    summary.celebrities = User.objects.filter(is_celebrity=True).count()
    summary.capped_feeds = User.objects.filter(feed_horizon__gt=0).count()
    cutoff = datetime.now(UTC) - timedelta(days=settings.FANOUT_INACTIVE_DAYS)
    summary.active_users = User.objects.filter(last_seen_at__gte=cutoff).count()
    summary.top_accounts = list(
        User.objects.order_by("-followers_count").values_list("username", "followers_count")[:5]
    )


def config_for(preset: str | None, **overrides: Any) -> SeedConfig:
    base = PRESETS[preset] if preset else PRESETS["small"]
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
