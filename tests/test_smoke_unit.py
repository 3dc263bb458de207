def test_alice_gets_an_api_token_when_she_signs_up(alice):
    assert alice.auth_token.key
