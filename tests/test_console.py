"""The web console in a real browser: headless Chromium (Debian's chromium and chromium-driver),
driven by selenium, against the running server's HTTP port. It signs in, lists the
collections, shows a collection's eval runs as a table and a chart, runs a HYBRID query and shows
the same rows as `db.query` with its stages as a timeline, and shows a broken query's error with
its caret. SPARSESQL_SCREENSHOTS=1 saves the screenshots into docs/images/ (the README's)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

from sparsesql.analysis import analyze
from sparsesql.eval import test_queries
from sparsesql.eval.run import evaluate, load_beir
from tests.conftest import beir_dir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs Chromium and its driver: apt-get install chromium chromium-driver (.ci/run does)"
)


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def screenshot(browser, tmp_path: Path, name: str) -> None:
    folder = DOCS_IMAGES if os.environ.get("SPARSESQL_SCREENSHOTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(folder / f"{name}.png"))


def test_the_console_searches_draws_the_stages_and_shows_errors(server, session_db, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    folder = beir_dir("cisi")
    name = load_beir(session_db, folder)
    evaluate(session_db, folder, "SPARSE(:q)", collection=name)  # judgments scored: the console's eval table
    query = next(iter(test_queries(folder).values()))
    statement = f"SELECT id, score FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:q)) LIMIT 10"
    with httpx.Client(base_url=server.http, auth=(server.user, server.password), timeout=120) as http:
        http.post("/query", json={"sql": statement, "params": {"q": query}})  # the encoder loaded: the timeline shows warm stages
    wait = WebDriverWait(browser, 60)
    find = browser.find_element

    browser.get(server.http + "/")
    assert browser.title == "sparsesql console"
    find(By.ID, "user").send_keys(server.user)
    find(By.ID, "password").send_keys(server.password)
    find(By.ID, "signin").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "whoami"), f"signed in as {server.user}"))
    names = [li.get_attribute("data-name") for li in browser.find_elements(By.CSS_SELECTOR, "#collections li")]
    assert name in names
    browser.find_element(By.CSS_SELECTOR, f'#collections li[data-name="{name}"]').click()
    facts = find(By.ID, "collection-facts").text
    assert "documents" in facts and "minilm-l6" in facts
    evals = browser.find_elements(By.CSS_SELECTOR, "#eval-table tbody tr")
    assert evals and "SPARSE(:q)" in evals[-1].text
    assert browser.find_elements(By.CSS_SELECTOR, "#eval-chart rect")

    editor = find(By.ID, "editor")
    editor.clear()
    editor.send_keys(statement)
    params = find(By.ID, "params")
    params.clear()
    params.send_keys(json.dumps({"q": query}))
    editor.send_keys(Keys.CONTROL, Keys.ENTER)
    wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "rows in"))
    shown = [row.find_elements(By.TAG_NAME, "td")[0].text for row in browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")]
    assert shown == [r["id"] for r in session_db.query(statement, q=query)]
    stages = browser.find_elements(By.CSS_SELECTOR, "#timeline .stage")
    labels = [s.find_element(By.CLASS_NAME, "name").text for s in stages]
    assert any(label.startswith("candidates [sparse]") for label in labels) and any(label.startswith("fuse") for label in labels)
    assert all(" ms, " in s.find_element(By.CLASS_NAME, "figures").text for s in stages)
    assert all(float(s.find_element(By.CLASS_NAME, "bar").value_of_css_property("width").rstrip("px")) > 0 for s in stages)
    assert not find(By.ID, "error").is_displayed()
    screenshot(browser, tmp_path, "console-hybrid")

    editor.clear()
    editor.send_keys(f"SELECT id FROM {name} SEARCH SPARSE(:q) LIMT 10")
    find(By.ID, "run").click()
    wait.until(ready.visibility_of_element_located((By.ID, "error")))
    message = find(By.CSS_SELECTOR, "#error .message").text
    caret = find(By.CSS_SELECTOR, "#error .caret").text
    assert 'unexpected identifier "LIMT"' in message and "42601" in message
    assert "LIMT 10" in caret and caret.splitlines()[-1].strip() == "^"
    assert caret.splitlines()[-1].index("^") == caret.splitlines()[0].index("LIMT")
    screenshot(browser, tmp_path, "console-error")

    find(By.ID, "search-text").send_keys("information retrieval systems")
    find(By.ID, "search-button").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "rows in"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")) == 10
    assert "HYBRID(SPARSE(:q), DENSE(:q))" in find(By.ID, "editor").get_attribute("value")
    # snippets with their marks, and pages through the cursor
    marks = [m.text.lower() for m in browser.find_elements(By.CSS_SELECTOR, "#results .snippet mark")]
    assert marks and all(set(analyze(m)) <= set(analyze("information retrieval systems")) for m in marks)
    first_page = [row.find_elements(By.TAG_NAME, "td")[0].text for row in browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")]
    screenshot(browser, tmp_path, "console-snippets")
    find(By.ID, "page-next").click()
    wait.until(ready.presence_of_element_located((By.ID, "page-first")))
    second_page = [row.find_elements(By.TAG_NAME, "td")[0].text for row in browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")]
    paged = f"SELECT id FROM {name} SEARCH HYBRID(SPARSE(:q), DENSE(:q)) LIMIT 10 OFFSET 10"
    assert second_page == [r.id for r in session_db.query(paged, q="information retrieval systems")] and not set(first_page) & set(second_page)
    find(By.ID, "page-first").click()
    wait.until(ready.invisibility_of_element_located((By.ID, "page-first")))
    assert [row.find_elements(By.TAG_NAME, "td")[0].text for row in browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")] == first_page


def test_the_console_refuses_a_wrong_password(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.http + "/")
    browser.find_element(By.ID, "user").send_keys(server.user)
    browser.find_element(By.ID, "password").send_keys("wrong")
    browser.find_element(By.ID, "signin").click()
    WebDriverWait(browser, 30).until(ready.text_to_be_present_in_element((By.ID, "whoami"), "sign-in failed"))
    assert "password authentication failed" in browser.find_element(By.ID, "collections").text


def test_the_console_shows_facet_counts_beside_the_results(server, db, browser, name, tmp_path):
    """A collection with a number field: the search box's search shows, beside its rows, the
    hits counted per year, as the dialect's GROUP BY counts them."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    db.create_collection(name, {"title": "text", "year": "int"}, dense="none", dim=2)
    db.collection(name).add([{"id": f"d{i}", "title": "sparse retrieval" if i % 3 else "dense vectors", "year": 2018 + i % 4,
                               "vector": [1.0, float(i)]} for i in range(40)])
    wait = WebDriverWait(browser, 60)
    browser.get(server.http + "/")
    browser.find_element(By.ID, "user").send_keys(server.user)
    browser.find_element(By.ID, "password").send_keys(server.password)
    browser.find_element(By.ID, "signin").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "whoami"), f"signed in as {server.user}"))
    Select(browser.find_element(By.ID, "search-collection")).select_by_value(name)
    Select(browser.find_element(By.ID, "search-mode")).select_by_value("SPARSE")
    browser.find_element(By.ID, "search-text").send_keys("retrieval")
    browser.find_element(By.ID, "search-button").click()
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, '#facets .facet[data-field="year"] li')))
    shown = [li.text for li in browser.find_elements(By.CSS_SELECTOR, '#facets .facet[data-field="year"] li')]
    counts = db.query(f"SELECT year, count(*) FROM {name} SEARCH SPARSE('retrieval') GROUP BY year")
    assert shown == [f"{r.year} ({r.count})" for r in counts] and sum(r.count for r in counts) == 26
    marks = browser.find_elements(By.CSS_SELECTOR, "#results .snippet mark")
    assert marks and {m.text for m in marks} == {"retrieval"}
    screenshot(browser, tmp_path, "console-facets")
    # more like this and a boost: their stages on the timeline, their lines in EXPLAIN's plan
    from selenium.webdriver.common.keys import Keys

    editor = browser.find_element(By.ID, "editor")
    statement = f"SELECT id, score FROM {name} SEARCH SPARSE(LIKE 'd1') ORDER BY score * (1 + year - 2018) LIMIT 5"
    for text, wanted in ((statement, "rows in"), ("EXPLAIN " + statement, "rows in")):
        editor.clear()
        editor.send_keys(text)
        editor.send_keys(Keys.CONTROL, Keys.ENTER)
        wait.until(ready.text_to_be_present_in_element((By.ID, "status"), wanted))
        if not text.startswith("EXPLAIN"):
            labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#timeline .stage .name")]
            assert "boost" in labels and any(label.startswith("candidates [sparse]") for label in labels)
            assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")] == [
                r.id for r in db.query(statement)]
    plan = browser.find_element(By.ID, "results").text
    assert "like: SPARSE LIKE d1: searches with" in plan and "boost (SQL + Python): ORDER BY score * ((1 + year) - 2018)" in plan
    # a phrase with an exclusion, and a field's weight: what they ask, in EXPLAIN's plan
    editor.clear()
    editor.send_keys(f"EXPLAIN SELECT id FROM {name} SEARCH SPARSE('\"sparse retrieval\" -dense', syntax => 'web', fields => (title => 2)) LIMIT 5")
    editor.send_keys(Keys.CONTROL, Keys.ENTER)
    wait.until(ready.text_to_be_present_in_element((By.ID, "results"), "syntax: [sparse]"))
    plan = browser.find_element(By.ID, "results").text
    assert 'syntax: [sparse] requires "sparse retrieval"; excludes -dense' in plan and "fields: [sparse] BM25F over title x 2" in plan
