"""Drive the running page in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, through Selenium): the end-to-end test uses it, and so does the README's
screenshot run::

    python tests/browser.py --url http://127.0.0.1:7860 --photo dish.jpg --query "tacos, salsa" \\
        --with avocado --screenshots assets

Each step waits for the page to change, then reads what a person would see.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TIMEOUT = 60


def find_chromium() -> tuple[str, str] | None:
    """(browser, driver) paths, or None when they are not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    return (browser, driver) if browser and driver else None


@dataclass
class PageObservations:
    gallery_captions: list[str] = field(default_factory=list)
    gallery_photos_shown: int = 0  # gallery images the browser loaded and decoded
    recipe_card: str = ""  # the card of the first photo, clicked
    more_captions: list[str] = field(default_factory=list)  # "more like this" of that photo
    marks_after_like: str = ""  # the marks once that photo is marked "Good"
    again_captions: list[str] = field(default_factory=list)  # "Search again with my marks"
    marks_after_clear: str = ""
    filtered_captions: list[str] = field(default_factory=list)
    dense_captions: list[str] = field(default_factory=list)  # the words, mode "dense"
    hybrid_captions: list[str] = field(default_factory=list)  # then mode "hybrid"
    looks_like: str = ""
    recipe_rows: list[str] = field(default_factory=list)
    suggested: str = ""
    similar_images: int = 0
    empty_query_message: str = ""
    unfolded_captions: list[str] = field(default_factory=list)  # "One photo per picture" off
    duplicates_summary: str = ""  # the Duplicates tab, its groups found
    duplicates_photos: int = 0  # photos it drew
    tagged_captions: list[str] = field(default_factory=list)  # the words, one label chosen
    tagged_card: str = ""  # the card of the first of those photos
    map: MapObservations | None = None  # the Map tab, after the photo search
    screenshots: list[Path] = field(default_factory=list)


@dataclass
class MapObservations:
    layout: str = ""  # the layout drawn first ("tsne", or "pca" while t-SNE is computed)
    points: int = 0  # photos on the figure
    star: dict[str, list[float]] = field(default_factory=dict)  # layout -> the star's [x, y]
    ringed: int = 0  # results ringed on the figure
    hovered_id: str = ""  # the point hovered, then clicked
    hover: str = ""  # the hover label shown over it
    card: str = ""  # the card shown once it is clicked


def open_browser(width: int = 1280, height: int = 1500):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if found is None:
        raise RuntimeError("Chromium not found: apt-get install chromium chromium-driver")
    browser, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def drive(
    url: str,
    photo: Path,
    query: str,
    with_ingredient: str,
    screenshots: Path | None = None,
    tag: str | None = None,
) -> PageObservations:
    """Text query -> photos; the first photo clicked -> its recipe, "more like this"; the
    words matched dense, the clicked photo marked good and searched again, the marks cleared;
    the words matched hybrid; a filter -> other photos; an uploaded photo -> what it looks
    like, recipes and suggested ingredients; the Map tab -> the photo's star, a point hovered
    and clicked, the other layout; an empty query -> a readable message; copies unfolded, the
    Duplicates tab; with ``tag`` ("field: label"), that label chosen in the filter."""
    from selenium.webdriver.common.by import By

    seen = PageObservations()
    driver = open_browser()
    try:
        driver.get(url)
        _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#query textarea"))
        _words_steps(driver, seen, query, screenshots)
        seen.dense_captions = _in_mode(driver, "dense", seen.more_captions)
        _feedback_steps(driver, seen)
        seen.hybrid_captions = _in_mode(driver, "hybrid", seen.again_captions)
        # the same words with an ingredient that must appear
        _open_accordion(driver, "Filters")
        _type(driver, "#with textarea, #with input", with_ingredient)
        driver.find_element(By.CSS_SELECTOR, "#search").click()
        before = seen.hybrid_captions
        seen.filtered_captions = _wait(driver, lambda d: _settled(d, "#gallery", before))
        _type(driver, "#with textarea, #with input", "")
        _photo_steps(driver, seen, photo, screenshots)
        seen.map = _map_steps(driver, seen, screenshots)
        # an empty query -> a message, not a crash
        driver.find_element(By.XPATH, "//button[@role='tab'][contains(., 'from words')]").click()
        _type(driver, "#query textarea", "")
        driver.find_element(By.CSS_SELECTOR, "#search").click()
        seen.empty_query_message = _wait(driver, lambda d: _toast(d))
        _duplicate_steps(driver, seen, query)
        if tag:
            _tag_steps(driver, seen, tag)
    finally:
        driver.quit()
    return seen


def _words_steps(driver, seen: PageObservations, query: str, screenshots: Path | None) -> None:
    """Words -> photos; the first photo's recipe, and more like it."""
    from selenium.webdriver.common.by import By

    _type(driver, "#query textarea", query)
    driver.find_element(By.CSS_SELECTOR, "#search").click()
    seen.gallery_captions = _wait(driver, lambda d: _settled(d, "#gallery", []))
    seen.gallery_photos_shown = _photos_shown(driver, "#gallery")
    _shot(driver, screenshots, "search-by-words", seen)
    driver.find_elements(By.CSS_SELECTOR, "#gallery img")[0].click()
    seen.recipe_card = _wait(driver, lambda d: _showing(d, "#recipe", "score"))
    driver.find_element(By.CSS_SELECTOR, "#more").click()
    before = seen.gallery_captions
    seen.more_captions = _wait(driver, lambda d: _settled(d, "#gallery", before))


def _duplicate_steps(driver, seen: PageObservations, query: str) -> None:
    """The words again with copies of one picture unfolded; the Duplicates tab's groups."""
    from selenium.webdriver.common.by import By

    _type(driver, "#query textarea", query)
    _open_accordion(driver, "Filters")
    driver.find_element(By.CSS_SELECTOR, "#collapse input").click()
    driver.find_element(By.CSS_SELECTOR, "#search").click()
    seen.unfolded_captions = _wait(driver, lambda d: _settled(d, "#gallery", []))
    driver.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Duplicates')]").click()
    driver.find_element(By.CSS_SELECTOR, "#find-duplicates").click()
    seen.duplicates_summary = _wait(driver, lambda d: _showing(d, "#duplicates", "groups"))
    drawn = len(driver.find_elements(By.CSS_SELECTOR, "#duplicates img"))
    seen.duplicates_photos = _wait(
        driver, lambda d: drawn if drawn and _photos_shown(d, "#duplicates") == drawn else None
    )


def _tag_steps(driver, seen: PageObservations, tag: str) -> None:
    """A label of the collection's tags chosen in the filter (the page's words as they are),
    the search run again, the first photo's card."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.find_element(By.XPATH, "//button[@role='tab'][contains(., 'from words')]").click()
    _open_accordion(driver, "Filters")
    box = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#dish input"))[0]
    box.click()
    box.send_keys(tag)
    option = f"li[role='option'][aria-label='{tag}']"
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, option))[0].click()
    box.send_keys(Keys.ESCAPE)
    driver.find_element(By.CSS_SELECTOR, "#search").click()
    before = seen.unfolded_captions
    seen.tagged_captions = _wait(driver, lambda d: _settled(d, "#gallery", before))
    driver.find_elements(By.CSS_SELECTOR, "#gallery img")[0].click()
    field = tag.split(":")[0]
    seen.tagged_card = _wait(driver, lambda d: _showing(d, "#recipe", field))


def drive_min_score(url: str, query: str) -> dict:
    """The least match probability set to 1 in the filters and ``query`` searched: the
    verdict; then set to 0 and searched again: the gallery's captions."""
    from selenium.webdriver.common.by import By

    driver = open_browser()
    try:
        driver.get(url)
        _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#query textarea"))
        _open_accordion(driver, "Filters")
        _type(driver, "#min-score input[type='number']", "1")
        _type(driver, "#query textarea", query)
        driver.find_element(By.CSS_SELECTOR, "#search").click()
        verdict = _wait(driver, lambda d: _showing(d, "#verdict", "No good match"))
        shown_then = _captions(driver, "#gallery")
        _type(driver, "#min-score input[type='number']", "0")
        driver.find_element(By.CSS_SELECTOR, "#search").click()
        captions = _wait(driver, lambda d: _captions(d, "#gallery"))
        cleared = _element_text(driver, "#verdict")
    finally:
        driver.quit()
    return {"verdict": verdict, "shown": shown_then, "captions": captions, "cleared": cleared}


def drive_region(url: str, photo: Path) -> dict:
    """A photo uploaded, a region drawn on it with two clicks (a tenth of the shown photo
    up-left of its centre, then down-right), "Find recipes": the note, whether the region's
    preview shows, the recipes; then "Whole photo": the note again."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver = open_browser()
    try:
        driver.get(url)
        _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#query textarea"))
        driver.find_element(By.XPATH, "//button[@role='tab'][contains(., 'this dish')]").click()
        upload = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#photo input"))
        upload[0].send_keys(str(Path(photo).resolve()))
        shown = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#photo img"))[0]
        width, height = shown.size["width"], shown.size["height"]
        corner = ActionChains(driver).move_to_element_with_offset(
            shown, -width // 10, -height // 10
        )
        for _ in range(3):  # a click while the upload still settles may not reach the photo
            corner.click().perform()
            try:
                _wait(driver, lambda d: _showing(d, "#region-note", "First corner"), timeout=5)
                break
            except TimeoutError:
                continue
        ActionChains(driver).move_to_element_with_offset(
            shown, width // 10, height // 10
        ).click().perform()
        note = _wait(driver, lambda d: _showing(d, "#region-note", "Region"))
        preview = _photos_shown(driver, "#region")
        driver.find_element(By.CSS_SELECTOR, "#identify").click()
        rows = _wait(driver, lambda d: _rows(d))
        driver.find_element(By.CSS_SELECTOR, "#whole-photo").click()
        cleared = _wait(driver, lambda d: _showing(d, "#region-note", "Whole photo"))
    finally:
        driver.quit()
    shown_at = (width, height)  # the photo element's size on the page, in CSS pixels
    return {"note": note, "preview": preview, "rows": rows, "cleared": cleared, "shown": shown_at}


def _in_mode(driver, mode: str, before: list[str]) -> list[str]:
    """The words searched again with the search mode ``mode``: the gallery's captions."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//*[@id='mode']//label[.//input[@value='{mode}']]").click()
    driver.find_element(By.CSS_SELECTOR, "#search").click()
    return _wait(driver, lambda d: _settled(d, "#gallery", before))


def _feedback_steps(driver, seen: PageObservations) -> None:
    """The clicked photo marked good, the words searched again with the mark, the marks
    cleared."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#like").click()
    seen.marks_after_like = _wait(driver, lambda d: _showing(d, "#marks", "liked 1"))
    driver.find_element(By.CSS_SELECTOR, "#again").click()
    before = seen.dense_captions
    seen.again_captions = _wait(driver, lambda d: _settled(d, "#gallery", before))
    driver.find_element(By.CSS_SELECTOR, "#clear-marks").click()
    seen.marks_after_clear = _wait(driver, lambda d: _showing(d, "#marks", "No marks"))


def _photo_steps(driver, seen: PageObservations, photo: Path, screenshots: Path | None) -> None:
    """A photo -> what it looks like, recipes, suggested ingredients, similar dishes."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, "//button[@role='tab'][contains(., 'this dish')]").click()
    upload = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#photo input"))
    upload[0].send_keys(str(Path(photo).resolve()))
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#photo img"))
    driver.find_element(By.CSS_SELECTOR, "#identify").click()
    seen.recipe_rows = _wait(driver, lambda d: _rows(d))
    seen.looks_like = _wait(driver, lambda d: _text(d, "#looks-like"))
    seen.suggested = _wait(driver, lambda d: _text(d, "#suggested"))
    seen.similar_images = len(driver.find_elements(By.CSS_SELECTOR, "#similar img"))
    _shot(driver, screenshots, "search-by-photo", seen)


# The figure Gradio drew in the Map tab: its layout, its points, the star, the ringed results.
FIGURE_JS = """
const gd = document.querySelector('#recipe-map .js-plotly-plot');
if (!gd || !gd.data || gd.data.length < 3 || !gd.data[2].x.length) return null;
return {layout: gd.layout.meta.layout, points: gd.data[0].x.length,
        star: [gd.data[2].x[0], gd.data[2].y[0]], ringed: gd.data[1].x.length};
"""
# The point farthest from any other (a mouse over it hovers it alone): its id and where it
# is, in pixels from the figure's centre.
LONE_POINT_JS = """
const gd = document.querySelector('#recipe-map .js-plotly-plot');
const full = gd._fullLayout, dishes = gd.data[0], box = gd.getBoundingClientRect();
const px = Array.from(dishes.x, (x) => full.xaxis.l2p(x) + full._size.l);
const py = Array.from(dishes.y, (y) => full.yaxis.l2p(y) + full._size.t);
let best = 0, room = -1;
for (let i = 0; i < px.length; i++) {
  let nearest = Infinity;
  for (let j = 0; j < px.length; j++) {
    if (i !== j) nearest = Math.min(nearest, Math.hypot(px[i] - px[j], py[i] - py[j]));
  }
  if (nearest > room) { room = nearest; best = i; }
}
return {id: dishes.customdata[best], dx: px[best] - box.width / 2, dy: py[best] - box.height / 2};
"""


HOVERED_JS = """
const gd = document.querySelector('#recipe-map .js-plotly-plot');
const hovered = (gd && gd._hoverdata) || [];
return hovered.length && hovered[0].curveNumber === 0 ? hovered[0].customdata : null;
"""


def _map_steps(driver, seen: PageObservations, screenshots: Path | None) -> MapObservations:
    """The Map tab after a search: the figure drawn, the star where the search fell and its
    results ringed; a point hovered (its title), then clicked (its card); the other layout."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    found = MapObservations()
    driver.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Map')]").click()
    drawn = _wait(driver, lambda d: d.execute_script(FIGURE_JS))
    found.layout, found.points, found.ringed = drawn["layout"], drawn["points"], drawn["ringed"]
    found.star[drawn["layout"]] = drawn["star"]
    lone = driver.execute_script(LONE_POINT_JS)
    found.hovered_id = lone["id"]
    figure = driver.find_element(By.CSS_SELECTOR, "#recipe-map .js-plotly-plot")
    ActionChains(driver).move_to_element_with_offset(
        figure, round(lone["dx"]), round(lone["dy"])
    ).perform()
    found.hover = _wait(driver, lambda d: _element_text(d, "#recipe-map .hoverlayer"))
    # the point Plotly says is under the mouse: the one aimed at, unless the figure moved
    # under it (a relayout on a busy machine); the label and the card must be that point's
    found.hovered_id = driver.execute_script(HOVERED_JS) or found.hovered_id
    ActionChains(driver).click().perform()
    found.card = _wait(driver, _written_card)
    _shot(driver, screenshots, "map", seen)
    other = "pca" if found.layout == "tsne" else "tsne"
    driver.find_element(
        By.XPATH, f"//*[@id='map-layout']//label[.//input[@value='{other}']]"
    ).click()
    drawn = _wait(
        driver, lambda d: (f := d.execute_script(FIGURE_JS)) and f["layout"] == other and f
    )
    found.star[other] = drawn["star"]
    return found


def _written_card(driver) -> str | None:
    """The map's card once written (its title, then its lines), not Gradio's "0.1s" while
    the click is answered."""
    card = _element_text(driver, "#map-card")
    return card if card and "\n" in card else None


def _wait(driver, condition, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition(driver)
        except Exception:  # an element replaced while read: look again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page did not show it within {timeout}s")
        time.sleep(0.2)


def _type(driver, selector: str, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, selector))[0]
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    if text:
        box.send_keys(text)


def _open_accordion(driver, label: str) -> None:
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "button.label-wrap, .label-wrap"):
        if label in button.text:
            if "open" not in (button.get_attribute("class") or ""):
                button.click()
            return


def _captions(driver, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    root = driver.find_element(By.CSS_SELECTOR, selector)
    if not root.find_elements(By.CSS_SELECTOR, "img"):
        return []
    labels = root.find_elements(By.CSS_SELECTOR, ".caption-label")
    captions = [label.text for label in labels if label.text]
    if not captions:
        captions = [i.get_attribute("alt") or "" for i in root.find_elements(By.TAG_NAME, "img")]
    return captions


def _photos_shown(driver, selector: str) -> int:
    """How many images under ``selector`` the browser has loaded and decoded."""
    script = (
        "return [...document.querySelectorAll(arguments[0] + ' img')]"
        ".filter(i => i.complete && i.naturalWidth > 0).length"
    )
    return int(driver.execute_script(script, selector))


def _settled(driver, selector: str, before: list[str]) -> list[str] | None:
    """The gallery's captions once they differ from ``before`` and stop changing."""
    first = _captions(driver, selector)
    if not first or first == before:
        return None
    time.sleep(0.7)
    return first if _captions(driver, selector) == first else None


def _rows(driver) -> list[str]:
    """The table's cell texts after its header (the table renders rows virtually)."""

    lines = [line.strip() for line in _element_text(driver, "#recipes").splitlines()]
    lines = [line for line in lines if line]
    if "ingredients" not in lines:
        return []
    cells = lines[lines.index("ingredients") + 1 :]
    return cells if any(_is_score(cell) for cell in cells) else []


def _is_score(text: str) -> bool:
    try:
        return -1.0 <= float(text) <= 1.0 and "." in text
    except ValueError:
        return False


def _element_text(driver, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector).text


def _text(driver, selector: str) -> str:
    from selenium.webdriver.common.by import By

    text = driver.find_element(By.CSS_SELECTOR, selector).text
    return text if "%" in text or any(ch.isdigit() for ch in text) else ""


def _showing(driver, selector: str, expected: str) -> str:
    """The element's text once it says ``expected`` (not the timer shown while it loads)."""
    text = _element_text(driver, selector)
    return text if expected in text else ""


def _toast(driver) -> str:
    from selenium.webdriver.common.by import By

    for toast in driver.find_elements(By.CSS_SELECTOR, ".toast-body, [data-testid='toast-body']"):
        if toast.text.strip():
            return toast.text.strip()
    return ""


def _shot(driver, folder: Path | None, name: str, seen: PageObservations) -> None:
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"screenshot-{name}.png"
    time.sleep(1.0)  # let images finish painting
    driver.save_screenshot(str(path))
    seen.screenshots.append(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Drive the page in headless Chromium.")
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--photo", required=True)
    parser.add_argument("--query", default="tortillas, beef, salsa, cheese")
    parser.add_argument("--with", dest="with_ingredient", default="avocado")
    parser.add_argument("--screenshots", default="assets")
    args = parser.parse_args(argv)
    seen = drive(
        args.url, Path(args.photo), args.query, args.with_ingredient, Path(args.screenshots)
    )
    print(f"gallery: {seen.gallery_captions[:4]}")
    print(f"again with the first one liked: {seen.again_captions[:4]}")
    print(f"dense: {seen.dense_captions[:4]}")
    print(f"hybrid: {seen.hybrid_captions[:4]}")
    print(f"looks like: {seen.looks_like[:200]!r}")
    print(f"with {args.with_ingredient}: {seen.filtered_captions[:4]}")
    print(f"recipes: {seen.recipe_rows[:3]}")
    print(f"suggested: {seen.suggested[:200]!r}")
    if seen.map is not None:
        print(
            f"map: {seen.map.points} points ({seen.map.layout}), star {seen.map.star}, "
            f"{seen.map.ringed} ringed, hover {seen.map.hover!r}"
        )
    print(f"empty query: {seen.empty_query_message!r}")
    print("screenshots: " + ", ".join(str(p) for p in seen.screenshots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
