"""core.idlist: a page's ids as one parameter, made from ints only."""

import pytest

from microblog.core.idlist import id_list
from microblog.posts.models import Post


def test_id_list_takes_ints_only() -> None:
    assert id_list([3, 1, 2]) == "3,1,2"
    assert id_list([]) == ""
    for bad in ([True], ["1"], [-1], [1.0], ["1); DROP TABLE posts_post; --"]):
        with pytest.raises(TypeError):
            id_list(bad)


def test_in_ids_finds_exactly_the_listed_rows(alice, make_post) -> None:
    posts = [make_post(alice, f"post {n}") for n in range(4)]
    wanted = [posts[0].id, posts[2].id, 2**63 - 1]
    found = Post.objects.filter(id__in_ids=id_list(wanted)).values_list("id", flat=True)
    assert sorted(found) == sorted(wanted[:2])
    assert not Post.objects.filter(id__in_ids=id_list([])).exists()
    with pytest.raises(TypeError):
        Post.objects.filter(id__in_ids=[posts[0].id]).exists()
