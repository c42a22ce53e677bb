"""The notebooks' sliders work in a real browser (issue 5).

For each notebook: open it in JupyterLab in headless Chromium, clear the saved outputs, run
all cells through the Run menu, wait for the widget, drag the slider's handle with a real
pointer drag (``.noUi-handle``), wait for the redraw and check that

* the slider's readout changed and the figure's pixels changed (before/after),
* no cell output holds a Python error or traceback, the log console (where JupyterLab puts
  what widget callbacks print, errors included) holds no traceback,
* the browser console logged no severe JavaScript error,
* the kernel got the caller's ``GNLIB_QUICK``.

Screenshots go to ``test-artifacts/browser/`` (git-ignored). The JupyterLab page is driven
through its UI (menus, mouse); the app object (``--LabApp.expose_app_in_browser``) is only
*read* (kernel status, the cells' outputs).
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from browser_harness import ARTIFACTS, REPO, copy_notebook, in_ci

RUN_TIMEOUT = 150      # s for "Run All Cells" in quick mode on a loaded 2-core machine
REDRAW_TIMEOUT = 90    # s from releasing the handle to the new figure
UI_TIMEOUT = 120       # s for JupyterLab to load and show the notebook


@dataclass(frozen=True)
class SliderCase:
    id: str
    notebook: str             # path under the repo
    label: str                # regex matched against the slider's description
    required: bool            # missing notebook: fail in CI (else skip) / always skip
    numbers: bool = False     # the widget also shows computed numbers that must change


CASES = [
    SliderCase("01-eps-slider", "notebooks/01_normalization_theory.ipynb", r"eps|ε", True,
               numbers=True),
    SliderCase("02-G-slider", "notebooks/02_normalization_sets_3d.ipynb", r"^\s*G\b", True,
               numbers=True),
    SliderCase("05-images-per-device-slider", "notebooks/05_batch_size_plot.ipynb",
               r"^\s*images per device", True),
    SliderCase("06-G-slider", "notebooks/06_group_ablation.ipynb", r"^\s*G\b", True),
    SliderCase("07-r_max-slider", "notebooks/07_beyond_group_norm.ipynb", r"^\s*r_max\b", True,
               numbers=True),
]

# Browser console entries at level SEVERE that are not errors of the page.
BENIGN_CONSOLE = [
    re.compile(r"favicon\.ico"),
]


# ---- reading the page (JupyterLab app object: read only) -------------------------------
JS_NOTEBOOK_STATE = """
const app = window.jupyterapp;
if (!app) return null;
// The notebook's panel among the main area's widgets (headless: no focus, no currentWidget).
let panel = null;
for (const w of app.shell.widgets('main')) {
  if (w.context && w.context.path === arguments[0]) { panel = w; }
}
if (!panel || !panel.content || !panel.content.model || !panel.sessionContext) return null;
const kernel = panel.sessionContext.session ? panel.sessionContext.session.kernel : null;
const cells = [];
for (const cell of panel.content.model.cells) {
  if (cell.type !== 'code') continue;
  const tags = cell.getMetadata('tags') || [];
  cells.push({count: cell.executionCount, outputs: cell.outputs.toJSON(),
              // JupyterLab does not send an empty cell to the kernel: it gets no count
              empty: !cell.sharedModel.getSource().trim(),
              raises: tags.includes('raises-exception')});
}
return {path: panel.context.path, ready: panel.context.isReady,
        kernel: kernel ? kernel.status : null,
        pending: panel.sessionContext.pendingInput === true,
        cells: cells};
"""

JS_FIGURE_PIXELS = """
// The pixels of every <img> and <canvas> in the slider's cell, as PNG data URLs.
const cell = arguments[0].closest('.jp-Cell') || document;
const out = [];
for (const el of cell.querySelectorAll('.jp-OutputArea img, .jp-OutputArea canvas')) {
  if (el.tagName === 'CANVAS') { out.push(el.toDataURL('image/png')); continue; }
  if (!el.complete || !el.naturalWidth) return null;   // still loading
  const c = document.createElement('canvas');
  c.width = el.naturalWidth; c.height = el.naturalHeight;
  c.getContext('2d').drawImage(el, 0, 0);
  out.push(c.toDataURL('image/png'));
}
return out;
"""

JS_PAGE_TRACEBACKS = """
// Rendered outputs showing a Python error inside Output widgets (an exception in a callback
// run under `with out:` lands there) and in the log console (where JupyterLab puts what
// other callbacks print). Cell outputs are checked on the notebook model instead.
const found = [];
for (const el of document.querySelectorAll(
    '.widget-output .jp-OutputArea-output, .jp-LogConsolePanel .jp-OutputArea-output')) {
  const text = el.textContent || '';
  if (text.includes('Traceback (most recent call last)')
      || (el.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr'
          && /^\\s*\\w*(Error|Exception)\\b/m.test(text))) {
    found.push(text.slice(-800));
  }
}
for (const el of document.querySelectorAll('.jp-OutputArea, .widget-output')) {
  if ((el.textContent || '').includes('Error displaying widget')) found.push('Error displaying widget');
}
return found;
"""

JS_NUMBERS = """
// The text of the HTML widgets (computed numbers) in the slider's cell.
const cell = arguments[0].closest('.jp-Cell') || document;
return Array.from(cell.querySelectorAll('.jp-OutputArea .widget-html')).map(e => e.textContent).join('\\n');
"""

JS_SLIDERS = """
return Array.from(document.querySelectorAll('.jp-OutputArea .widget-slider')).map(s => {
  const label = s.querySelector('.widget-label');
  const readout = s.querySelector('.widget-readout');
  return [s, label ? label.textContent : '', readout ? readout.textContent.trim() : '',
          !!s.querySelector('.noUi-handle')];
});
"""


def wait_for(predicate, timeout, what, interval=0.5):
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # stale elements while JupyterLab re-renders
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r:.300})",
                pytrace=False)


def notebook_state(driver, path):
    return driver.execute_script(JS_NOTEBOOK_STATE, path)


def error_outputs(state) -> list[str]:
    """Python errors and tracebacks in the cells' outputs (not in cells tagged
    ``raises-exception``, which nbval also lets fail)."""
    found = []
    for i, cell in enumerate(state["cells"]):
        if cell["raises"]:
            continue
        for out in cell["outputs"]:
            if out.get("output_type") == "error":
                found.append(f"code cell {i}: {out.get('ename')}: {out.get('evalue')}")
            elif out.get("output_type") == "stream" and "Traceback (most recent call last)" \
                    in "".join(out.get("text", "")):
                found.append(f"code cell {i}: traceback on {out.get('name')}: "
                             f"{''.join(out.get('text', ''))[-500:]}")
    return found


def fail_on_page_tracebacks(driver, when: str) -> None:
    found = driver.execute_script(JS_PAGE_TRACEBACKS)
    if found:
        pytest.fail(f"Python error shown in the page {when}:\n" + "\n---\n".join(found),
                    pytrace=False)


def severe_console_errors(driver) -> list[str]:
    entries = driver.get_log("browser")
    return [e["message"] for e in entries if e.get("level") == "SEVERE"
            and not any(p.search(e.get("message", "")) for p in BENIGN_CONSOLE)]


# ---- driving the page (real UI) --------------------------------------------------------
def by_xpath(driver, xpath):
    from selenium.webdriver.common.by import By
    return [e for e in driver.find_elements(By.XPATH, xpath) if e.is_displayed()]


def click_menu(driver, menu: str, item: str) -> None:
    """Open ``menu`` in JupyterLab's menu bar and click ``item`` (labels as shown)."""
    from selenium.webdriver.common.keys import Keys
    top = wait_for(lambda: by_xpath(
        driver, f"//li[contains(@class,'lm-MenuBar-item')][normalize-space()='{menu}']"),
        30, f"menu {menu!r}")
    top[0].click()
    entry = wait_for(lambda: by_xpath(
        driver, "//ul[contains(@class,'lm-Menu-content')]/li[contains(@class,'lm-Menu-item')]"
                f"[.//div[contains(@class,'lm-Menu-itemLabel')][normalize-space()='{item}']]"),
        30, f"menu entry {menu} > {item}")
    entry[0].click()
    if by_xpath(driver, "//ul[contains(@class,'lm-Menu-content')]"):
        driver.switch_to.active_element.send_keys(Keys.ESCAPE)


def accept_kernel_dialog(driver) -> bool:
    """A notebook without kernelspec asks for a kernel: accept the proposed one."""
    dialogs = by_xpath(driver, "//div[contains(@class,'jp-Dialog-content')]")
    if not dialogs:
        return False
    text = dialogs[0].text
    if "Kernel" not in text:
        pytest.fail(f"unexpected JupyterLab dialog: {text!r}", pytrace=False)
    buttons = by_xpath(driver, "//div[contains(@class,'jp-Dialog-content')]"
                               "//button[contains(@class,'jp-mod-accept')]")
    buttons[0].click()
    return True


def open_notebook(driver, server, rel_path: str):
    driver.get(server.lab_url(rel_path))

    def ready():
        accept_kernel_dialog(driver)
        st = notebook_state(driver, rel_path)
        return st if st and st["path"] == rel_path and st["ready"] and st["kernel"] == "idle" \
            else None
    return wait_for(ready, UI_TIMEOUT, f"JupyterLab to open {rel_path} with an idle kernel",
                    interval=1)


def run_all_cells(driver, path: str) -> dict:
    """Clear the saved outputs, Run > Run All Cells, wait until every code cell ran."""
    click_menu(driver, "Edit", "Clear Outputs of All Cells")
    wait_for(lambda: all(not c["outputs"] and c["count"] is None
                         for c in notebook_state(driver, path)["cells"]),
             30, "the saved outputs to be cleared")
    click_menu(driver, "Run", "Run All Cells")

    def finished():
        st = notebook_state(driver, path)
        if error_outputs(st):
            return st  # Run All stops at an error; report it below
        done = st["kernel"] == "idle" and all(c["count"] for c in st["cells"]
                                              if not c["empty"])
        return st if done else None
    return wait_for(finished, RUN_TIMEOUT, "Run All Cells to finish", interval=1)


def find_slider(driver, label_regex: str):
    """The slider whose description matches ``label_regex`` (the only one if unlabelled)."""
    pattern = re.compile(label_regex, re.I)
    sliders = wait_for(lambda: [s for s in driver.execute_script(JS_SLIDERS) if s[3]],
                       60, "a slider widget to render")
    matching = [s for s in sliders if pattern.search(s[1])]
    if not matching and len(sliders) == 1:
        matching = sliders
    if not matching:
        return None, [s[1] for s in sliders]
    return matching[0], [s[1] for s in sliders]


def readout(slider_el) -> str:
    from selenium.webdriver.common.by import By
    return slider_el.find_element(By.CSS_SELECTOR, ".widget-readout").text.strip()


def drag_handle(driver, slider_el, fraction: float = 0.4) -> None:
    """Press the ``.noUi-handle``, move it by ``fraction`` of the track (towards the longer
    side) in small steps, release: what a user's mouse does."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    handle = slider_el.find_element(By.CSS_SELECTOR, ".noUi-handle")
    track = slider_el.find_element(By.CSS_SELECTOR, ".noUi-base")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
    t, h = track.rect, handle.rect
    x = h["x"] + h["width"] / 2
    right = (t["x"] + t["width"]) - x >= x - t["x"]
    distance = fraction * t["width"] * (1 if right else -1)
    steps = 6
    chain = ActionChains(driver, duration=50).move_to_element(handle).click_and_hold()
    for _ in range(steps):
        chain.move_by_offset(round(distance / steps), 0).pause(0.05)
    chain.release().perform()


def figure_digest(driver, slider_el):
    pixels = driver.execute_script(JS_FIGURE_PIXELS, slider_el)
    if not pixels:
        return None
    return hashlib.sha256("\n".join(pixels).encode()).hexdigest()


def screenshot(driver, slider_el, name: str) -> list[Path]:
    """Full window and the widget's cell, both scrolled so that the slider is visible."""
    from selenium.webdriver.common.by import By
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cell = driver.execute_script("return arguments[0].closest('.jp-Cell');", slider_el)
    outputs = cell.find_element(By.CSS_SELECTOR, ".jp-Cell-outputWrapper")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", outputs)
    time.sleep(0.3)
    page, widget = ARTIFACTS / f"{name}.png", ARTIFACTS / f"{name}-cell.png"
    driver.save_screenshot(str(page))
    widget.write_bytes(outputs.screenshot_as_png)
    return [page, widget]


def kernel_env(server) -> dict[str, str] | None:
    pids = server.kernel_pids()
    if len(pids) != 1:
        return None
    try:
        raw = Path(f"/proc/{pids[0]}/environ").read_bytes()
    except OSError:
        return None
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0")
                if "=" in item)


# ---- the test ---------------------------------------------------------------------------
def numbers_text(driver, element) -> str:
    return driver.execute_script(JS_NUMBERS, element)


def wait_settled(driver, rel_path: str, element, what: str) -> str:
    """Wait until the kernel is idle and ``element``'s figure shows the same pixels twice (a
    widget may redraw several times while a control moves); returns the settled digest."""
    last = [None]

    def settled():
        idle = notebook_state(driver, rel_path)["kernel"] == "idle"
        digest = figure_digest(driver, element)
        stable = idle and digest is not None and digest == last[0]
        last[0] = digest
        return digest if stable else None
    return wait_for(settled, REDRAW_TIMEOUT, f"the kernel to go idle and {what} to settle",
                    interval=1.5)


def assert_page_clean(driver, server, rel_path: str, when: str) -> None:
    """After an interaction: no Python error in the notebook's outputs or on the page, no
    traceback in the log console (where widget callbacks report), no severe JavaScript error,
    and the kernel got the caller's ``GNLIB_QUICK``."""
    errors = error_outputs(notebook_state(driver, rel_path))
    assert not errors, "Python error in the notebook's outputs:\n" + "\n".join(errors)
    fail_on_page_tracebacks(driver, when)
    click_menu(driver, "View", "Show Log Console")
    log_text = wait_for(lambda: by_xpath(driver, "//div[contains(@class,'jp-LogConsolePanel')]"),
                        30, "the log console")[0].text
    assert "Traceback" not in log_text, f"a widget callback failed {when}:\n{log_text[-2000:]}"
    js_errors = severe_console_errors(driver)
    assert not js_errors, "JavaScript errors in the browser console:\n" + "\n".join(js_errors)
    env = kernel_env(server)
    assert env is not None, "could not read the kernel's environment"
    assert env.get("GNLIB_QUICK") == os.environ.get("GNLIB_QUICK"), \
        "the kernel did not get the caller's GNLIB_QUICK"


def missing_notebook(reason: str, required: bool = True) -> None:
    """A notebook the test needs is not there (yet): a failure under CI=true when the case is
    required, else a skip with the reason."""
    if required and in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def open_and_run(driver, server, rel_path: str) -> None:
    """Open the notebook in JupyterLab, run all its cells, and fail on any Python error."""
    open_notebook(driver, server, rel_path)
    errors = error_outputs(run_all_cells(driver, rel_path))
    assert not errors, "Python error in the notebook's outputs:\n" + "\n".join(errors)


def check_slider_redraws(driver, server, rel_path: str, label: str, name: str,
                         numbers: bool = False) -> None:
    t0 = time.monotonic()
    open_and_run(driver, server, rel_path)

    found, labels = find_slider(driver, label)
    assert found is not None, f"{rel_path}: no slider labelled /{label}/ (sliders: {labels})"
    slider_el = found[0]
    fail_on_page_tracebacks(driver, "after running all cells")
    before_value = readout(slider_el)
    before = wait_for(lambda: figure_digest(driver, slider_el), 60,
                      "the widget's figure to render")
    before_numbers = numbers_text(driver, slider_el)
    assert not numbers or before_numbers.strip(), "the widget shows no numbers"
    shots = screenshot(driver, slider_el, f"{name}-before")
    t_ready = time.monotonic()

    drag_handle(driver, slider_el)
    after_value = wait_for(lambda: readout(slider_el) != before_value and readout(slider_el),
                           15, f"the slider's readout to leave {before_value!r} after the drag")

    def redrawn():
        fail_on_page_tracebacks(driver, f"after moving the slider to {after_value}")
        digest = figure_digest(driver, slider_el)
        return digest if digest and digest != before else None
    wait_for(redrawn, REDRAW_TIMEOUT,
                     f"the figure to change after moving the slider {before_value} -> "
                     f"{after_value}")
    # Let the kernel finish (a slider with continuous_update sends several values while
    # dragged, each one a redraw) and the image settle: idle kernel, same pixels twice.
    settled = wait_settled(driver, rel_path, slider_el, "the new figure")
    shots += screenshot(driver, slider_el, f"{name}-after")
    assert settled != before, "the figure went back to the old one"
    assert readout(slider_el) == after_value, "the slider's value jumped back"
    if numbers:
        assert numbers_text(driver, slider_el) != before_numbers, \
            f"the numbers did not change after moving the slider to {after_value}"

    assert_page_clean(driver, server, rel_path, "after the redraw")
    print(f"{name}: slider {before_value} -> {after_value}; notebook ready in "
          f"{t_ready - t0:.0f} s, redraw checked in {time.monotonic() - t_ready:.0f} s; "
          f"screenshots: {', '.join(str(p.relative_to(REPO)) for p in shots)}")


DEMO_CELLS = [
    "import os\n"
    "import ipywidgets as w\n"
    "import matplotlib.pyplot as plt\n"
    "import numpy as np\n"
    "print('GNLIB_QUICK =', os.environ.get('GNLIB_QUICK'))",
    "# NBVAL_IGNORE_OUTPUT\n"
    "slider = w.IntSlider(value=2, min=1, max=8, description='G', continuous_update=False)\n"
    "out = w.Output()\n"
    "def draw(change=None):\n"
    "    with out:\n"
    "        out.clear_output(wait=True)\n"
    "        fig, ax = plt.subplots(figsize=(4, 2.5))\n"
    "        x = np.linspace(0, 2 * np.pi, 200)\n"
    "        ax.plot(x, np.sin(slider.value * x))\n"
    "        ax.set_title(f'G = {slider.value}')\n"
    "        plt.show()\n"
    "slider.observe(draw, names='value')\n"
    "draw()\n"
    "display(w.VBox([slider, out]))",
]


def write_demo_notebook(path: Path) -> None:
    """A tiny notebook like the course's: an IntSlider redrawing a matplotlib plot."""
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                 "name": "python3"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in DEMO_CELLS]
    nbformat.write(nb, str(path))


def test_demo_slider_redraws_figure(lab, browser):
    """The harness itself, on a tiny notebook that does not depend on the course's."""
    write_demo_notebook(lab.root / "notebooks" / "browser_demo.ipynb")
    check_slider_redraws(browser, lab, "notebooks/browser_demo.ipynb", r"^\s*G\b", "demo")


def notebook_mentions_slider(path: Path) -> bool:
    """Cheap static look before starting a browser: a code cell that makes a slider, directly
    or through gnlib.widgets."""
    import nbformat
    nb = nbformat.read(str(path), as_version=4)
    return any(c.cell_type == "code" and re.search(r"Slider\b|gnlib\.widgets|sets_explorer",
                                                   c.source)
               for c in nb.cells)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_slider_redraws_figure(case, lab, browser):
    src = REPO / case.notebook
    if not src.is_file():
        missing_notebook(f"{case.notebook} does not exist yet", case.required)
    if not notebook_mentions_slider(src):
        pytest.skip(f"{case.notebook} has no ipywidgets slider yet")
    copy_notebook(src, lab.root / case.notebook)
    check_slider_redraws(browser, lab, case.notebook, case.label, case.id, case.numbers)


# ---- notebook 02: the cubes turn with the mouse (ipympl canvas) -----------------------------
ROTATABLE_NOTEBOOK = "notebooks/02_normalization_sets_3d.ipynb"

JS_MPL_CANVAS = """
// The ipympl figure's canvases: [top canvas (gets the mouse), count of drawn pixels].
const fig = document.querySelector('.jp-OutputArea .jupyter-matplotlib-figure');
if (!fig) return null;
const canvases = Array.from(fig.querySelectorAll('canvas'));
if (!canvases.length) return null;
let ink = 0;
for (const c of canvases) {
  if (!c.width || !c.height) continue;
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let k = 3; k < data.length; k += 4 * 97) { if (data[k] > 0) ink++; }
}
return [canvases[canvases.length - 1], ink];
"""


def drag_on(driver, element, offset_x: float, distance: tuple[float, float]) -> None:
    """Press at ``offset_x`` pixels right of the element's centre, move by ``distance`` in
    small steps, release: a mouse drag on the figure."""
    from selenium.webdriver.common.action_chains import ActionChains
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    steps = 8
    chain = ActionChains(driver, duration=50).move_to_element_with_offset(
        element, int(offset_x), 0).click_and_hold()
    for _ in range(steps):
        chain.move_by_offset(round(distance[0] / steps), round(distance[1] / steps)).pause(0.1)
    chain.release().perform()


def test_cubes_turn_with_the_mouse(lab, browser):
    """Notebook 02's ipympl canvas: a mouse drag on a cube re-renders the figure (the view
    turned in the kernel), without errors; the static figures of the notebook stay images."""
    src = REPO / ROTATABLE_NOTEBOOK
    if not src.is_file():
        missing_notebook(f"{ROTATABLE_NOTEBOOK} does not exist yet")
    copy_notebook(src, lab.root / ROTATABLE_NOTEBOOK)
    driver, t0 = browser, time.monotonic()
    open_and_run(driver, lab, ROTATABLE_NOTEBOOK)
    top, _ = wait_for(lambda: (lambda r: r if r and r[1] > 0 else None)(
        driver.execute_script(JS_MPL_CANVAS)), 90, "the ipympl canvas to draw the cubes")
    before = wait_for(lambda: figure_digest(driver, top), 30, "the canvas pixels")
    shots = screenshot(driver, top, "02-rotate-before")
    width = top.rect["width"]
    drag_on(driver, top, -0.14 * width, (140, 50))   # on the second cube (LN), to the right

    def turned():
        fail_on_page_tracebacks(driver, "after dragging the cubes")
        digest = figure_digest(driver, top)
        return digest if digest and digest != before else None
    wait_for(turned, REDRAW_TIMEOUT, "the cubes to turn after the drag")
    after = wait_settled(driver, ROTATABLE_NOTEBOOK, top, "the turned figure")
    shots += screenshot(driver, top, "02-rotate-after")
    assert after != before, "the figure went back to the old view"
    assert_page_clean(driver, lab, ROTATABLE_NOTEBOOK, "after the drag")
    figures = driver.execute_script(
        "return document.querySelectorAll('.jp-OutputArea .jupyter-matplotlib-figure').length;")
    assert figures == 1, f"{figures} ipympl canvases: later figures must stay static images"
    print(f"02-rotate: drag turned the cubes; notebook + drag checked in "
          f"{time.monotonic() - t0:.0f} s; screenshots: "
          f"{', '.join(str(p.relative_to(REPO)) for p in shots)}")


# ---- notebook 04: the "train now" panel (a button that trains) ------------------------------
TRAIN_NOW_NOTEBOOK = "notebooks/04_training_norms.ipynb"
TRAIN_TIMEOUT = 180    # s from the click to the redrawn figure (a quick run on a busy machine)

JS_BUTTONS = """
// Buttons and toggle buttons in output areas: [element, text, disabled].
return Array.from(document.querySelectorAll(
    '.jp-OutputArea button.widget-button, .jp-OutputArea button.widget-toggle-button'))
  .map(b => [b, (b.textContent || '').trim(), b.disabled]);
"""


def find_button(driver, text: str, within=None):
    """The visible (toggle) button labelled ``text`` (in ``within``'s cell if given)."""
    def look():
        for el, label, disabled in driver.execute_script(JS_BUTTONS):
            if label != text:
                continue
            if within is not None and not driver.execute_script(
                    "return arguments[0].closest('.jp-Cell') === arguments[1].closest('.jp-Cell');",
                    el, within):
                continue
            return el, disabled
        return None
    return wait_for(look, 60, f"a button labelled {text!r}")


def click(driver, element) -> None:
    """A real pointer click in the middle of ``element``."""
    from selenium.webdriver.common.action_chains import ActionChains
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    ActionChains(driver, duration=50).move_to_element(element).pause(0.1).click().perform()


def test_train_now_button_trains_and_redraws(lab, browser):
    """Notebook 04's panel: choose GN (toggle), press Train now; the run finishes in the
    kernel, the figure and the numbers change to the live GN run, the button comes back."""
    src = REPO / TRAIN_NOW_NOTEBOOK
    if not src.is_file():
        missing_notebook(f"{TRAIN_NOW_NOTEBOOK} does not exist yet")
    copy_notebook(src, lab.root / TRAIN_NOW_NOTEBOOK)
    driver, t0, path = browser, time.monotonic(), TRAIN_NOW_NOTEBOOK
    open_and_run(driver, lab, path)
    button, disabled = find_button(driver, "Train now")
    assert not disabled, "the Train now button is disabled before any click"
    fail_on_page_tracebacks(driver, "after running all cells")
    before = wait_for(lambda: figure_digest(driver, button), 60, "the panel's figure to render")
    shots = screenshot(driver, button, "04-train-now-before")

    gn, _ = find_button(driver, "GN", within=button)
    click(driver, gn)

    def chose_gn():
        digest = figure_digest(driver, button)
        text = numbers_text(driver, button)
        return digest if digest and digest != before and "GN, G = 32" in text \
            and "live run: press Train now" in text else None
    chosen = wait_for(chose_gn, REDRAW_TIMEOUT, "the panel to show the GN setting")

    click(driver, button)

    def trained():
        fail_on_page_tracebacks(driver, "after pressing Train now")
        text = numbers_text(driver, button)
        el, disabled = find_button(driver, "Train now", within=button)
        digest = figure_digest(driver, button)
        done = ("live run (quick preset" in text and "GN, G = 32" in text and not disabled
                and digest and digest != chosen)
        return (digest, text) if done else None
    wait_for(trained, TRAIN_TIMEOUT, "the live run to finish and the figure to change", interval=1)
    after = wait_settled(driver, path, button, "the figure")
    shots += screenshot(driver, button, "04-train-now-after")
    assert after not in (before, chosen), "the figure went back to an old one"
    numbers = numbers_text(driver, button)
    assert re.search(r"live run \(quick preset.*test error \d+\.\d\d %", numbers), numbers
    assert_page_clean(driver, lab, path, "after the live run")
    print(f"04-train-now: GN trained live in the browser; checked in "
          f"{time.monotonic() - t0:.0f} s; screenshots: "
          f"{', '.join(str(p.relative_to(REPO)) for p in shots)}")


# ---- notebook 05: the batch statistics of real activations (slice-size slider) ---------------
#: ``gnlib.widgets.batch_statistics_explorer``'s slider is labelled "slice size".
BATCH_STATS_CASE = SliderCase("05-batch-statistics-slider", "notebooks/05_batch_size_plot.ipynb",
                              r"^\s*slice size", True, numbers=True)


def test_batch_statistics_slider_redraws(lab, browser):
    case = BATCH_STATS_CASE
    src = REPO / case.notebook
    import nbformat
    has_widget = src.is_file() and any(
        c.cell_type == "code" and "batch_statistics_explorer" in c.source
        for c in nbformat.read(str(src), as_version=4).cells)
    if not has_widget:
        missing_notebook(f"{case.notebook} has no batch_statistics_explorer cell yet", case.required)
    copy_notebook(src, lab.root / case.notebook)
    check_slider_redraws(browser, lab, case.notebook, case.label, case.id, case.numbers)
