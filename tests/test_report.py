"""`tedloc report`: one self-contained HTML page, checked by structure and rendered in a real headless browser."""
from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from tedloc.methods.cam import PretrainConfig
from tedloc.methods.tedloc import TeDLocTrainConfig
from tedloc.recipes import Recipe, run_recipe
from tedloc.report import gallery_indices
from runtimes import CPU


class _Page(HTMLParser):
    """The images (src) and the headings of a page."""

    def __init__(self):
        super().__init__()
        self.images, self.headings, self._tag = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self._tag = tag

    def handle_data(self, data):
        if self._tag in ("h2", "h3", "h4") and data.strip():
            self.headings.append(data.strip())


SCOPE = "What this shows: the pipeline end to end on a tiny synthetic set; not the papers' numbers."


@pytest.fixture(scope="module")
def recipe_folder(synthetic_small, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    np.save(root / "emb.npy", np.random.default_rng(0).normal(size=(4, 16)))
    recipe = Recipe(pretrain=PretrainConfig(input_size=48, epochs=2, batch_size=8, workers=0),
                    tedloc=TeDLocTrainConfig(decoder_channels=(8,), epochs=2, batch_size=8, k=4, cache_views=1),
                    variants=("tedloc",), text_encoder=f"file:{root / 'emb.npy'}", gallery=2, name="tiny",
                    scope=SCOPE)
    run_recipe(synthetic_small, root / "out", recipe, log=lambda _: None, runtime=CPU)
    return root / "out"


def test_the_recipe_writes_a_self_contained_page(recipe_folder):
    page = _Page()
    text = (recipe_folder / "report.html").read_text()
    page.feed(text)
    for section in ("Results (test split)", "Per-threshold curves", "Training curves", "Error analysis", "Gallery"):
        assert section in page.headings, section
    assert {"cam", "tedloc", "best", "worst", "random"} <= set(page.headings)
    assert "GT-known" in text and "<td>cam@pred</td>" in text and "<td>class@pred</td>" in text
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)  # nothing outside
    for src in page.images:  # every picture decodes, and is not blank
        image = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L"))
        assert image.size > 0 and image.std() > 0
    assert not re.search(r"(src|href)=['\"](?!data:)", text)
    # 2 curves (box accuracy, PxAP) for each of cam and tedloc, 2 training plots each, 1 error plot, a gallery
    assert len(page.images) >= 2 * 2 + 2 * 2 + 1 + 2 * 2


def test_report_of_a_run_and_of_an_evaluation(recipe_folder, synthetic_small, tmp_path, capsys):
    from tedloc.cli import main

    assert main(["report", str(recipe_folder / "runs" / "tedloc"), "--out", str(tmp_path / "run.html")]) == 0
    page = _Page()
    page.feed((tmp_path / "run.html").read_text())
    assert "Training curves" in page.headings and len(page.images) == 2
    evaluation = tmp_path / "m.json"
    assert main(["evaluate", "--run", str(recipe_folder / "runs" / "cam"), "--data", str(synthetic_small),
                 "--json", str(evaluation)]) == 0
    assert main(["report", str(evaluation)]) == 0
    vis = tmp_path / "vis"
    assert main(["evaluate", "--run", str(recipe_folder / "runs" / "tedloc"), "--data", str(synthetic_small),
                 "--save-vis", "2", "--vis-dir", str(vis)]) == 0
    drawn = sorted(p.name for p in vis.glob("*.png"))
    assert [n.split("_")[0] for n in drawn] == ["best", "best", "random", "random", "worst", "worst"]
    assert "Per-threshold curves" in (tmp_path / "report.html").read_text()
    (tmp_path / "other.json").write_text(json.dumps({"x": 1}))
    assert main(["report", str(tmp_path / "other.json")]) == 2
    assert "not an evaluation" in capsys.readouterr().err


def test_gallery_ious_are_those_of_the_drawn_boxes(recipe_folder, synthetic_small):
    """The IoU that ranks an image is that of the box `tedloc predict` draws, in image pixels."""
    from tedloc.data import load_dataset
    from tedloc.eval.boxes import box_iou
    from tedloc.inference import Localizer
    from tedloc.methods import load_model
    from tedloc.report import gallery_pictures

    dataset = load_dataset(synthetic_small)
    split = dataset["test"]
    run = recipe_folder / "runs" / "tedloc"
    pictures = gallery_pictures(load_model(run, runtime=CPU), split, dataset.class_names, 0.3, 1, pool=5)
    localizer = Localizer.from_run(run, threshold=0.3)
    for items in pictures.values():
        for image_id, _, _, iou in items:
            i = split.index_of(image_id)
            box = localizer(split.image_path(i))[0].box
            assert iou == pytest.approx(float(box_iou(np.array([box]), split.boxes[i]).max()))
    with pytest.raises(Exception, match="count >= 0"):
        gallery_pictures(load_model(run, runtime=CPU), split, dataset.class_names, 0.3, -1)


def test_gallery_groups():
    ious = np.array([0.1, 0.9, 0.5, 0.3, 0.7, 0.0, 0.2])
    groups = gallery_indices(ious, 2)
    assert groups["best"] == [1, 4] and groups["worst"] == [5, 0]
    assert len(groups["random"]) == 2 and not set(groups["random"]) & {1, 4, 5, 0}
    assert gallery_indices(ious, 2) == groups  # seeded


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def test_the_page_renders_in_a_headless_browser(recipe_folder, tmp_path):
    """A real browser opens the page from disk: every image loads, and the page is not blank."""
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs Chromium for the browser test (.ci/run installs it)")
        pytest.skip("no Chromium on this machine")
    page = tmp_path / "page.html"
    text = (recipe_folder / "report.html").read_text()
    probe = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
             "document.title='loaded '+i.filter(x=>x.complete&&x.naturalWidth>0).length+' of '+i.length;});</script>")
    page.write_text(text.replace("</body>", probe + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--allow-file-access-from-files",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    loaded = re.search(r"<title>loaded (\d+) of (\d+)</title>", dom)
    assert loaded, dom[:300]
    assert int(loaded.group(1)) == int(loaded.group(2)) > 0
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                   capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # not a blank page


def test_overlay_draws_a_whole_image_box_inside_and_a_legend():
    from tedloc.viz import render_overlay

    image = Image.fromarray(np.full((64, 64, 3), 90, dtype=np.uint8))
    out = np.asarray(render_overlay(image, np.zeros((8, 8)), (0, 0, 63, 63), np.array([[10, 10, 40, 40]]),
                                    alpha=0.0))
    white = (out == 255).all(axis=2)
    assert white[128, 0] and white[128, -1] and white[0, 128] and white[-1, 200]  # all four sides on the image
    green = (out == (0, 255, 0)).all(axis=2)
    assert green[:, :].sum() > 0 and green[-10:, :40].any()  # the GT box, and the legend's GT swatch
    plain = np.asarray(render_overlay(image, np.zeros((8, 8)), alpha=0.0))
    assert not (plain == 255).all(axis=2).any()  # no box, no legend


def _text(page: str) -> str:
    """The text of an HTML page, tags left out and entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_both_reports_have_the_recipe_name_as_title(recipe_folder):
    md = (recipe_folder / "report.md").read_text()
    page = (recipe_folder / "report.html").read_text()
    assert md.splitlines()[0] == "# tedloc results: tiny"
    assert "<title>tedloc results: tiny</title>" in page and "<h1>tedloc results: tiny</h1>" in page
    assert json.loads((recipe_folder / "recipe.json").read_text()) == {"name": "tiny", "scope": SCOPE, "notes": []}


def test_both_reports_define_every_column_and_say_what_the_numbers_show(recipe_folder):
    from tedloc.report.glossary import DEFINED_METRICS, centered_box_sentence, no_look_sentences, table_definitions

    md = (recipe_folder / "report.md").read_text()
    page = _text((recipe_folder / "report.html").read_text())
    header = next(line for line in md.splitlines() if line.startswith("| method | map |"))
    columns = [c.strip() for c in header.strip("|").split("|")][2:]
    assert {"CL@1", "MaxBoxAcc", "MaxBoxAccV2", "Top1Loc", "Top5Loc", "Top1Loc@val_thr", "mIoU", "PxAP"} <= set(columns)
    results = json.loads((recipe_folder / "results.json").read_text())
    lines = table_definitions(results, columns)
    assert len(lines) == len([c for c in columns if c in DEFINED_METRICS]) == len(columns)
    for line in lines:
        assert f"- {line}" in md.splitlines() and line in page, line
    # where each threshold comes from: the test boxes (oracle) or the val split (no test box)
    assert "Top1Loc: " in md and "[oracle: chosen with the test boxes]" in next(x for x in lines if x.startswith("Top1Loc:"))
    assert "[val: " in next(x for x in lines if x.startswith("Top1Loc@val_thr:"))
    assert "| centered_box |" in md and "<td>centered_box</td>" in (recipe_folder / "report.html").read_text()
    sentence = centered_box_sentence(results["centered_box"]["box_fraction"])
    assert sentence in md and sentence in page and "no-look baseline" in sentence
    assert "| centered_gaussian |" in md and "<td>centered_gaussian</td>" in (recipe_folder / "report.html").read_text()
    gaussian = no_look_sentences(results)[1]
    assert gaussian.startswith("centered_gaussian: the other no-look baseline") and gaussian in md and gaussian in page
    assert SCOPE in md and SCOPE in page
    from tedloc.report.glossary import verdicts

    assert verdicts(results) and "## What the table shows" in md  # every method: its margin or why it loses
    for line in verdicts(results):
        assert f"- {line}" in md and line in page


def test_the_page_says_which_threshold_the_curves_and_the_gallery_show(recipe_folder):
    page = _text((recipe_folder / "report.html").read_text())
    assert "Dashed line: the oracle threshold, the best on the test boxes" in page
    assert "dotted line: the run's threshold chosen on the val split" in page
    stored = json.loads((recipe_folder / "runs" / "tedloc" / "model.json").read_text())["threshold"]
    assert f"the run's stored threshold {stored:.3f}, chosen on the val split with no test box" in page
    assert "not the oracle threshold of the curves' dashed line" in page


def test_gallery_captions_are_whole(recipe_folder, synthetic_small):
    from tedloc.data import load_dataset
    from tedloc.methods import load_model
    from tedloc.report import gallery_pictures

    dataset = load_dataset(synthetic_small, splits=["test"])
    run = recipe_folder / "runs" / "tedloc"
    threshold = json.loads((run / "model.json").read_text())["threshold"]
    pictures = gallery_pictures(load_model(run, runtime=CPU), dataset["test"], dataset.class_names, threshold, 2)
    page = (recipe_folder / "report.html").read_text().split("<h2>Gallery</h2>")[1].split("<h3>tedloc</h3>")[1]
    captions = [html.unescape(c) for c in re.findall(r"<figcaption>IoU [0-9.]+: (.*?)</figcaption>", page)]
    assert captions and captions == [c for items in pictures.values() for _, _, c, _ in items]


def test_wrap_caption_breaks_at_spaces_then_inside_words():
    import cv2

    from tedloc.viz import wrap_caption

    def width(text):
        return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0]

    assert wrap_caption("aaa bbb", width("aaa bbb"), 0.5) == ["aaa bbb"]
    assert wrap_caption("aaa bbb", width("aaa bbb") - 1, 0.5) == ["aaa", "bbb"]
    assert wrap_caption("aaaaaa bb", width("aaa"), 0.5) == ["aaa", "aaa", "bb"]
    assert wrap_caption("", 10, 0.5) == [""]


def test_a_long_caption_is_drawn_on_several_lines():
    from tedloc.viz import render_overlay

    image = Image.fromarray(np.full((64, 64, 3), 90, dtype=np.uint8))
    short = np.asarray(render_overlay(image, np.zeros((8, 8)), caption="cat", alpha=0.0, min_side=64))
    long = np.asarray(render_overlay(image, np.zeros((8, 8)), caption="blue_triangle (true: red_circle)",
                                     alpha=0.0, min_side=64))

    def band(a):  # rows of the black caption band on the left edge
        return int((a[:, 0] == 0).all(axis=1).sum())

    assert band(long) >= 2 * band(short) > 0


def test_the_presets_name_their_reports_and_say_what_they_cannot_show():
    from tedloc.recipes.presets import get_preset, paper_recipe

    demo = get_preset("demo")
    assert demo.name == "demo" and "stand-ins trained here in minutes" in demo.scope
    assert "its numbers are not the papers'" in demo.scope and "no-look baseline" in demo.scope
    assert get_preset("tinyimagenet-quick").name == "tinyimagenet-quick"
    assert "DiPS" not in get_preset("tinyimagenet-quick").scope  # the quick preset has no DiPS
    assert paper_recipe("cub")[1].name == "cub"


def test_verdicts_give_each_method_its_margin_or_why_it_loses():
    from tedloc.report.glossary import verdicts

    results = {"centered_box": {"MaxBoxAcc": 40.0}, "centered_gaussian": {"MaxBoxAcc": 45.0},
               "cam": {"MaxBoxAcc": 30.0, "error/LPE": 50.0, "error/LME": 5.0, "error/MIns": 0.0, "error/other": 15.0},
               "tedloc": {"MaxBoxAcc": 57.5},
               "dips": {"MaxBoxAcc": 46.0},
               "has": {"MaxBoxAcc": 25.0, "error/LPE": 10.0, "error/LME": 5.0, "error/MIns": 0.0, "error/other": 60.0}}
    assert verdicts(results) == [
        "cam (MaxBoxAcc 30.00) does not beat the no-look centered_gaussian (45.00): its box covers only a part of "
        "the object (LPE: the box mostly inside the GT box) for 50.0% of the test images.",
        "tedloc (MaxBoxAcc 57.50) beats the no-look centered_gaussian by 12.50 points.",
        "dips (MaxBoxAcc 46.00) beats the no-look centered_gaussian by 1.00 points.",
        "has (MaxBoxAcc 25.00) does not beat the no-look centered_gaussian (45.00), nor cam (30.00): its box misses "
        "the object (neither inside nor around the GT box) for 60.0% of the test images."]
    no_baselines = {"cam": {"MaxBoxAcc": 30.0}, "dips": {"MaxBoxAcc": 20.0, "error/LME": 70.0}}
    assert verdicts(no_baselines) == ["dips (MaxBoxAcc 20.00) is below cam (30.00): its box is too large (LME: the GT "
                                      "box mostly inside it) for 70.0% of the test images."]
    assert verdicts({"cam": {"PxAP": 3.0}}) == []
