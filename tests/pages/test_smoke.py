import pytest


@pytest.mark.django_db
def test_home_page_renders_for_a_visitor(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b"All posts" in response.content


def test_signed_in_home_shows_own_post(alice, make_post, client_for):
    make_post(alice, "first post from alice")
    response = client_for(alice).get("/")
    assert response.status_code == 200
    assert "first post from alice" in response.content.decode()
