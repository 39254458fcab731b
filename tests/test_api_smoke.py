from conftest import bearer


def test_login_then_countries(api, new_client, login):
    _, key, secret = new_client()
    tokens = login(key, secret)
    response = api.get("/api/v1/countries", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert {"id", "name", "official_name", "alpha_2", "alpha_3", "numeric_code", "dialing_prefix"} <= set(response.json()[0])
