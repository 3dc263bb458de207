"""Sign-up, log-in and log-out pages, through their forms."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_signup_lands_on_the_chat_and_logout_returns_to_login(sessions, server):
    session = sessions()
    page = session.context.new_page()
    page.goto(f"{server.url}/")
    # Not logged in: the chat sends you to the login page, which links to sign-up.
    expect(page).to_have_url(f"{server.url}/accounts/login/?next=/")
    page.click("text=Create one")
    expect(page).to_have_url(f"{server.url}/accounts/signup/")

    # A mismatched confirmation is refused with a message, on the same page.
    page.fill("#id_username", "newcomer")
    page.fill("#id_password1", "a-long-enough-passphrase")
    page.fill("#id_password2", "something-else-entirely")
    page.click("button[type=submit]")
    expect(page.locator(".field.has-error .errorlist")).to_be_visible()
    expect(page).to_have_url(f"{server.url}/accounts/signup/")

    page.fill("#id_password1", "a-long-enough-passphrase")
    page.fill("#id_password2", "a-long-enough-passphrase")
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server.url}/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "online")
    expect(page.locator(".sidebar-foot .me")).to_have_text("newcomer")
    expect(page.locator("#rooms-empty")).to_be_visible()

    # Log out is a POST form; it ends the session.
    page.click("#logout")
    expect(page).to_have_url(f"{server.url}/accounts/login/")
    page.goto(f"{server.url}/")
    expect(page).to_have_url(f"{server.url}/accounts/login/?next=/")

    # A wrong password is refused; the right one logs in.
    page.fill("#id_username", "newcomer")
    page.fill("#id_password", "not-the-password")
    page.click("button[type=submit]")
    expect(page.locator(".form-error")).to_be_visible()
    page.fill("#id_password", "a-long-enough-passphrase")
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server.url}/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "online")
