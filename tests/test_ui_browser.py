"""The service's page in a real browser: headless Chromium (Debian's package) driven by
Playwright. A refused key gets the sign-in message; a valid key routes and explains a
query, the chart is drawn with the chosen model marked; a screenshot is saved under the
test's tmp dir (its path printed; `pytest -s` shows it). Skipped with the reason where no
browser can start."""

import os
import shutil

import httpx
import pytest

pytest_plugins = ["tests.router_fixtures", "tests.serve_fixtures", "tests.page_fixtures"]

USER_KEY, ADMIN_KEY = "sk-page-user-4d1a", "sk-page-admin-8c2e"   # tests/page_fixtures.py's
QUERY = "What is 17 * 23?"
TIMEOUT_MS = 60_000


def chromium_path() -> str | None:
  """$IRT_JAX_CHROMIUM, else Debian's chromium on the PATH."""
  given = os.environ.get("IRT_JAX_CHROMIUM")
  if given:
    return given if os.path.isfile(given) else None
  return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
  sync_api = pytest.importorskip("playwright.sync_api",
                                 reason="needs playwright (requirements.txt, tests section)")
  path = chromium_path()
  if path is None:
    pytest.skip("no Chromium to drive: apt-get install chromium (or set IRT_JAX_CHROMIUM)")
  playwright = sync_api.sync_playwright().start()
  try:
    chromium = playwright.chromium.launch(executable_path=path, headless=True,
                                          args=["--no-sandbox", "--disable-gpu"])
  except Exception as e:  # noqa: BLE001 - any failure to start is a reason to skip
    playwright.stop()
    pytest.skip(f"Chromium at {path} cannot start: {str(e).splitlines()[0]}")
  yield chromium
  chromium.close()
  playwright.stop()


def _sign_in(page, key):
  page.fill("#key", key)
  page.click("#signin")


def test_a_refused_key_gets_the_sign_in_message(browser, page_service):
  page = browser.new_page()
  page.set_default_timeout(TIMEOUT_MS)
  page.goto(page_service["url"] + "/ui")
  page.wait_for_selector("#login:not([hidden])")
  assert "needs an API key" in page.text_content("#login-message")
  _sign_in(page, "sk-not-a-key")
  page.wait_for_function("document.getElementById('login-message').textContent.includes('refused')")
  assert page.is_hidden("#main")
  # a user key signs in; the admin sections say they need an admin key
  _sign_in(page, USER_KEY)
  page.wait_for_selector("#main:not([hidden])")
  page.wait_for_function("document.getElementById('feedback').textContent.includes('admin key')")
  assert page.is_hidden("#login")
  page.close()


def test_route_and_explain_draws_the_chart_with_the_choice_marked(browser, page_service,
                                                                   tmp_path):
  url, router = page_service["url"], page_service["router"]
  for model in page_service["routable"][:3] + page_service["routable"][:1]:   # some traffic
    httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {USER_KEY}"},
               json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
               timeout=30)
  expected = router.explain([QUERY], cost_weight=0.2)[0]
  page = browser.new_page(viewport={"width": 1280, "height": 900})
  page.set_default_timeout(TIMEOUT_MS)
  page.goto(url + "/ui")
  _sign_in(page, ADMIN_KEY)
  page.wait_for_selector("#main:not([hidden])")
  page.fill("#query", QUERY)
  page.fill("#cost-weight", "0.2")
  page.click("#go")
  page.wait_for_selector("#chosen-model")
  assert page.text_content("#chosen-model") == expected["choice"]["model"]
  bars = page.query_selector_all("#chart svg rect.bar")
  assert len(bars) == len(router.model_names)
  chosen = page.query_selector_all("#chart svg g.row.chosen")
  assert len(chosen) == 1
  assert chosen[0].get_attribute("data-model") == expected["choice"]["model"]
  assert "chosen" in chosen[0].text_content()
  widths = [float(b.get_attribute("width")) for b in bars]
  p = [m["p_correct"] for m in expected["models"]]
  assert widths == pytest.approx([max(1, x * 300) for x in p], abs=0.01)   # drawn to scale
  box = bars[0].bounding_box()
  assert box is not None and box["width"] > 0 and box["height"] > 0
  page.wait_for_selector("#abilities svg circle")
  page.wait_for_function("document.getElementById('spend').textContent.startsWith('None')")
  assert len(page.query_selector_all("#traffic tr")) == len(router.model_names) + 1
  assert "nearest" in page.text_content("#why").lower()
  shot = tmp_path / "ui.png"
  page.screenshot(path=str(shot), full_page=True)
  print(f"\nscreenshot of the page: {shot}")
  assert shot.stat().st_size > 10_000
  page.close()
