// aelab latent explorer: plain JavaScript over the JSON API (no framework, no build step, no network).
//
// Decodes are coalesced: at most one /api/decode is in flight; slider moves made meanwhile only mark the
// code dirty, and the newest code is sent (on the next animation frame) when the previous answer arrives.
"use strict";

const THUMB = 72 + 8;  // a thumbnail's width (64 px image, padding, border) and the gap after it
const MAX_PAGE = 200;  // the server's most images per page
const $ = (id) => document.getElementById(id);

const S = {
  runs: [], run: null,          // run infos from /api/runs; the current one
  split: null,                  // the split the gallery shows (val, train, test or data)
  offset: 0, total: 0, page: 16, // gallery paging; page: as many thumbnails as fit the strip
  facts: {},                    // per run, element -> {effect, factors} from /api/elements
  imageId: null, upload: null,  // the picked data-set image id, or the uploaded File
  imageCode: [], code: [],      // the image's own code, and the code being decoded
  extra: [],                    // elements added through the search box
  diff: false,
  interp: null,                 // {picking, b, codeB, t} while interpolating
  client: Math.random().toString(36).slice(2, 10),
  seq: 0, inflight: false, dirty: false, polling: null, paging: 0, booting: true,
  epoch: 0,                     // bumped when a new image or run is shown: older decodes are dropped
};

// -- small helpers ----------------------------------------------------------------------------
async function api(path, body, init = {}) {
  const opts = body === undefined ? init : {method: "POST", ...init,
    body: body instanceof FormData ? body : JSON.stringify(body),
    headers: body instanceof FormData ? {} : {"Content-Type": "application/json"}};
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({detail: `${r.status} ${r.statusText}`}));
  if (!r.ok) throw new Error(data.detail || `${r.status} ${r.statusText}`);
  return data;
}

function status(text, error = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

function fail(err) { status(err.message || String(err), true); }

function fmt(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.001 || a >= 10000)) return v.toExponential(2);
  return v.toFixed(a >= 100 ? 1 : 3);
}

function short(v) {
  // Three significant digits for range ends: "-6.71", "0.0312", "1.2e+3".
  return Math.abs(v) >= 1000 ? v.toExponential(1) : String(Number(v.toPrecision(3)));
}

function pageSize() {
  // As many whole thumbnails as the strip is wide: none is ever cut off.
  const width = $("gallery").clientWidth || 1000;
  return Math.max(1, Math.min(MAX_PAGE, Math.floor((width + 8) / THUMB)));
}

function signed(r) { return (r < 0 ? "−" : "+") + Math.abs(r).toFixed(2); }

function rangeText(kind) {
  return {data: "data mean ± 2σ", prior: "the prior's central 95%", minmax: "data min … max"}[kind] || kind;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function setPending() { document.body.dataset.pending = S.booting || S.inflight || S.dirty || S.paging ? "1" : "0"; }

// -- runs ---------------------------------------------------------------------------------------
async function loadRuns() {
  const body = await api("/api/runs");
  S.runs = body.runs;
  const sel = $("run-select");
  sel.replaceChildren(...S.runs.map((r) => el("option", {value: r.name},
    `${r.name}${r.variational ? " (VAE)" : ""}`)));
  sel.disabled = S.runs.length < 2;
  sel.addEventListener("change", () => switchRun(sel.value).catch(fail));
  await switchRun(S.runs[0].name);
}

function showRunInfo() {
  const r = S.run;
  const chip = (k, v) => el("span", {class: "chip"}, `${k} `, el("b", {}, v));
  $("run-info").replaceChildren(
    el("span", {class: "chip", title: "model family"}, el("b", {}, r.family), r.variational ? " · variational" : ""),
    chip("code", r.latent_shape.join("×")),
    chip("image", r.image_shape.join("×")),
    ...(r.psnr != null ? [chip("val PSNR", `${r.psnr.toFixed(2)} dB`)] : []));
  $("split-select").replaceChildren(...r.splits.map((s) => el("option", {value: s.name, title: s.source},
    `${s.label} · ${s.n_images}`)));
  $("split-select").value = S.split;
  $("split-select").disabled = r.splits.length < 2;
  showSource();
  $("search").hidden = r.slider_order === "all";
  $("search-index").max = r.latent_size - 1;
  const [h, w] = r.image_shape;
  document.documentElement.style.setProperty("--aspect", `${w} / ${h}`);
  // Slider columns as wide as the longest name and range label of this run (monospace ch).
  const labels = r.low.map((lo, i) => rangeLabel(lo, r.high[i]).length);
  const sliders = $("sliders").style;
  sliders.setProperty("--range-ch", Math.max(8, ...labels) + 1);
  sliders.setProperty("--name-ch", `z[${r.latent_size - 1}]`.length + 1);
}

function showSource() {
  const s = S.run.splits.find((x) => x.name === S.split);
  $("data-name").textContent = `${s.label}${S.split === "data" ? "" : " split"}: ${s.n_images} images; ` +
    `ids are rows of ${s.source}`;
}

function rangeLabel(lo, hi) { return `${short(lo)} … ${short(hi)}`; }

async function switchRun(name) {
  S.run = S.runs.find((r) => r.name === name);
  $("run-select").value = name;
  S.extra = [];
  if (!S.run.splits.some((s) => s.name === S.split)) S.split = S.run.split;
  closeInterp();
  showRunInfo();
  watchRanking();
  const keep = S.imageId;
  if (S.upload) {
    await loadPage(0);
    return encodeUpload(S.upload);
  }
  try {
    if (keep !== null) return await jump(keep);
  } catch (err) { /* not in this run's split: fall back to its first image */ }
  await loadPage(0);
  const first = document.querySelector("#gallery .thumb");
  if (first) await pick(Number(first.dataset.id));
}

async function switchSplit(name) {
  S.split = name;
  $("split-select").value = name;
  closeInterp();
  showSource();
  await loadPage(0);
  const first = document.querySelector("#gallery .thumb");
  if (first) await pick(Number(first.dataset.id));
}

async function jump(id) {
  // The page that holds image `id` in the current split, then the image itself; a 404 says where it is.
  await loadPage(0, id);
  await pick(id);
}

function watchRanking() {
  // Large codes: sliders first follow the data's spread, then the measured effect once the server has it.
  clearTimeout(S.polling);
  if (S.run.slider_order !== "spread") return;
  S.polling = setTimeout(async () => {
    const fresh = (await api("/api/runs")).runs.find((r) => r.name === S.run.name);
    const i = S.runs.findIndex((r) => r.name === fresh.name);
    S.runs[i] = fresh;
    if (S.run.name === fresh.name) {
      S.run = fresh;
      if (fresh.slider_order !== "spread") { renderSliders(); loadFacts(); } else watchRanking();
    }
  }, 2000);
}

// -- gallery --------------------------------------------------------------------------------------
async function loadPage(offset, atId = null) {
  S.page = pageSize();
  const where = atId === null ? `offset=${offset}` : `at_id=${atId}`;
  S.paging++;
  setPending();
  let body;
  try {
    body = await api(`/api/images?run=${encodeURIComponent(S.run.name)}&split=${S.split}&${where}` +
      `&limit=${S.page}`);
  } finally {
    S.paging--;
    setPending();
  }
  offset = body.offset;
  S.offset = offset;
  S.total = body.total;
  $("gallery").replaceChildren(...body.items.map((it) => el("button", {
    class: "thumb", "data-id": it.id, title: `image ${it.id}`,
    onclick: () => (S.interp && S.interp.picking ? pickB(it.id) : pick(it.id)).catch(fail),
  }, el("img", {src: it.image, alt: `image ${it.id}`}), el("span", {}, `#${it.id}`))));
  const last = Math.min(offset + S.page, S.total);
  $("page-label").textContent = S.total ? `${offset + 1}–${last} of ${S.total}` : "no images";
  $("page-prev").disabled = offset === 0;
  $("page-next").disabled = last >= S.total;
  markGallery();
}

function markGallery() {
  for (const t of document.querySelectorAll("#gallery .thumb")) {
    const id = Number(t.dataset.id);
    t.classList.toggle("selected", S.upload === null && id === S.imageId);
    t.classList.toggle("is-b", !!(S.interp && S.interp.b === id));
  }
}

// -- picking an image -------------------------------------------------------------------------------
function showEncoded(body, caption) {
  S.epoch++;
  S.imageCode = body.code.slice();
  S.code = body.code.slice();
  $("img-original").src = body.original;
  $("img-recon").src = body.reconstruction;
  $("img-edited").src = body.reconstruction;
  $("cap-original").textContent = caption;
  $("command-box").hidden = true;
  $("btn-command").title = S.upload !== null ? "the aelab edit command that makes this decode from your file (--image)"
    : "the aelab edit command that makes this decode";
  renderSliders();
  loadFacts();
  if (S.diff) requestDecode();
  else updateEditedCaption();
}

async function pick(id) {
  const body = await api("/api/encode", {run: S.run.name, image_id: id, split: S.split});
  S.imageId = id;
  S.upload = null;
  closeInterp();
  showEncoded(body, `#${id}`);
  markGallery();
  status(`image #${id} of the ${S.run.splits.find((x) => x.name === S.split).label} images`);
}

async function encodeUpload(file) {
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("run", S.run.name);
  const body = await api("/api/encode", form);
  S.upload = file;
  S.imageId = null;
  closeInterp();
  showEncoded(body, `upload: ${file.name}`);
  markGallery();
  status(`uploaded ${file.name}, resized to ${S.run.image_shape.slice(0, 2).join("×")}`);
}

// -- sliders ----------------------------------------------------------------------------------------
function sliderIndices() {
  const r = S.run;
  const base = r.slider_order === "all" ? [...Array(r.latent_size).keys()] : r.sliders;
  return [...base, ...S.extra.filter((i) => !base.includes(i))];
}

function renderSliders() {
  const r = S.run;
  const shown = sliderIndices();
  const note = r.slider_order === "all" ? `${r.latent_size} elements · range: ${rangeText(r.range)}`
    : r.slider_order === "effect" ? `top ${r.sliders.length} of ${r.latent_size} by effect on the decode`
      : `top ${r.sliders.length} of ${r.latent_size} by spread in the data (measuring effect…)`;
  $("code-note").textContent = note;
  if (!S.code.length) {
    $("sliders").replaceChildren(el("div", {class: "empty"}, "Pick an image to see its code."));
    return;
  }
  $("sliders").replaceChildren(...shown.map((i) => sliderRow(i, S.extra.includes(i))));
}

function bounds(i) {
  const lo = Math.min(S.run.low[i], S.code[i], S.imageCode[i]);
  const hi = Math.max(S.run.high[i], S.code[i], S.imageCode[i]);
  return hi > lo ? [lo, hi] : [lo - 1, hi + 1];
}

function sliderRow(i, removable) {
  const [lo, hi] = bounds(i);
  const input = el("input", {type: "range", min: lo, max: hi, step: (hi - lo) / 500, "data-index": i,
    "aria-label": `element ${i}`});
  input.value = S.code[i];
  const mark = el("span", {class: "mark", title: "the image's own value"});
  const value = el("span", {class: "value mono"}, fmt(S.code[i]));
  const row = el("div", {class: "slider", "data-index": i},
    el("span", {class: "name mono", title: "double-click: back to the image's value"}, `z[${i}]`),
    el("div", {class: "track"}, input, mark),
    value,
    el("span", {class: "range mono", title: `slider range: ${rangeText(S.run.range)}`},
      rangeLabel(S.run.low[i], S.run.high[i])),
    removable ? el("button", {class: "remove", title: "remove", onclick: () => removeExtra(i)}, "×") : el("span"),
    el("div", {class: "facts", "data-index": i}));
  showFacts(row.querySelector(".facts"), i);
  const place = () => {
    const [a, b] = bounds(i);
    mark.style.left = `calc(8px + (100% - 16px) * ${(S.imageCode[i] - a) / (b - a)})`;
    row.classList.toggle("changed", S.code[i] !== S.imageCode[i]);
    value.textContent = fmt(S.code[i]);
  };
  input.addEventListener("input", () => {
    S.code[i] = Number(input.value);
    place();
    requestDecode();
  });
  row.querySelector(".name").addEventListener("dblclick", () => {
    S.code[i] = S.imageCode[i];
    input.value = S.code[i];
    place();
    requestDecode();
  });
  row.place = place;
  place();
  return row;
}

// -- what each element moves ------------------------------------------------------------------------
async function loadFacts() {
  // The two strongest factors (r) and the measured effect of each shown element, asked once per run.
  const run = S.run.name;
  const known = S.facts[run] || (S.facts[run] = {note: null, elements: {}});
  const todo = sliderIndices().filter((i) => !(i in known.elements));
  if (!todo.length || !S.code.length) return;
  const body = await api(`/api/elements?run=${encodeURIComponent(run)}&elements=${todo.slice(0, 256).join(",")}`);
  known.note = body.factors_note;
  for (const e of body.elements) known.elements[e.element] = e;
  if (S.run.name !== run) return;
  for (const box of document.querySelectorAll("#sliders .facts")) showFacts(box, Number(box.dataset.index));
  if (todo.length > 256) await loadFacts();
}

function showFacts(box, i) {
  const known = S.facts[S.run.name];
  const e = known && known.elements[i];
  if (!e) { box.textContent = " "; return; }
  const parts = (e.factors || []).map((f) => el("span", {}, el("b", {}, f.factor), ` r ${signed(f.r)}`));
  const effect = el("span", {class: "effect", title: "mean |pixel change| (pixels in 0..1) with this element " +
    "alone at either end of its range, from the data's mean code"}, `Δ ${e.effect.toFixed(3)}`);
  const items = [effect, ...parts];
  box.replaceChildren(...items.flatMap((x, k) => (k ? [" · ", x] : [x])));
  box.title = e.factors ? "the generating factors this element tracks most (Pearson r over " +
    `${S.run.data}) and its measured effect on the decode` : (known.note || "");
}

function syncSliders() {
  // The code changed as a whole (reset, sample, mix): move every slider, widening ranges where needed.
  for (const row of document.querySelectorAll("#sliders .slider")) {
    const i = Number(row.dataset.index);
    const input = row.querySelector("input");
    const [lo, hi] = bounds(i);
    input.min = lo;
    input.max = hi;
    input.step = (hi - lo) / 500;
    input.value = S.code[i];
    row.place();
  }
}

function addExtra() {
  const box = $("search-index");
  const i = Number(box.value);
  if (box.value === "" || !Number.isInteger(i) || i < 0 || i >= S.run.latent_size) {
    status(`element index must be 0..${S.run.latent_size - 1}`, true);
    return;
  }
  if (!sliderIndices().includes(i)) S.extra.push(i);
  box.value = "";
  renderSliders();
  loadFacts().catch(fail);
  const row = document.querySelector(`#sliders .slider[data-index="${i}"]`);
  if (row) row.scrollIntoView({block: "nearest"});
}

function removeExtra(i) {
  S.extra = S.extra.filter((j) => j !== i);
  renderSliders();
}

function changedCount() {
  let n = 0;
  for (let i = 0; i < S.code.length; i++) if (S.code[i] !== S.imageCode[i]) n++;
  return n;
}

function updateEditedCaption() {
  const n = changedCount();
  $("cap-edited").textContent = n === 0 ? "unchanged" : `${n} element${n > 1 ? "s" : ""} changed`;
}

// -- decoding (coalesced) ------------------------------------------------------------------------------
function requestDecode() {
  S.dirty = true;
  setPending();
  updateEditedCaption();
  if (!S.inflight) requestAnimationFrame(pump);
}

async function pump() {
  if (!S.dirty || S.inflight) return;
  S.dirty = false;
  S.inflight = true;
  setPending();
  const started = performance.now();
  const epoch = S.epoch;
  const body = {run: S.run.name, code: S.code.slice(), client: S.client, seq: ++S.seq, diff: S.diff};
  if (S.diff) {
    if (S.imageId !== null && S.upload === null) Object.assign(body, {image_id: S.imageId, split: S.split});
    else body.reference = S.imageCode;
  }
  try {
    const r = await api("/api/decode", body);
    if (!r.superseded && r.seq === S.seq && epoch === S.epoch) {
      $("img-edited").src = r.image;
      if (r.diff) {
        $("img-diff").src = r.diff;
        $("cap-diff").textContent = `max ${r.diff_max.toFixed(3)}`;
      }
      status(`decoded in ${Math.round(performance.now() - started)} ms`);
    }
  } catch (err) {
    fail(err);
  } finally {
    S.inflight = false;
    setPending();
    if (S.dirty) requestAnimationFrame(pump);
  }
}

// -- buttons ----------------------------------------------------------------------------------------------
function reset() {
  S.code = S.imageCode.slice();
  if (S.interp) setMix(0, false);
  syncSliders();
  requestDecode();
}

async function randomSample() {
  const r = await api("/api/sample", {run: S.run.name, n: 1});
  S.code = r.codes[0];
  syncSliders();
  requestDecode();
  status(`random code from ${r.drawn_from} (seed ${r.seed})`);
}

function startInterp() {
  if (!S.code.length) return;
  S.interp = {picking: true, b: null, codeB: null, t: 0};
  $("pick-hint").hidden = false;
  status("pick image B in the strip above");
}

async function pickB(id) {
  const body = await api("/api/encode", {run: S.run.name, image_id: id, split: S.split});
  Object.assign(S.interp, {picking: false, b: id, codeB: body.code});
  $("pick-hint").hidden = true;
  $("interp").hidden = false;
  $("interp-a").textContent = S.upload ? "upload" : `#${S.imageId}`;
  $("interp-b").textContent = `#${id}`;
  markGallery();
  setMix(0.5, true);
  const strip = $("interp-strip");
  strip.replaceChildren();
  if (S.upload === null) {
    const r = await api("/api/interpolate", {run: S.run.name, image_a: S.imageId, image_b: id, steps: 11,
      split: S.split});
    strip.replaceChildren(...r.images.map((src, k) => el("img", {src, alt: `t = ${r.t[k]}`,
      title: `t = ${r.t[k].toFixed(2)}`, "data-t": r.t[k], onclick: () => setMix(r.t[k], true)})));
    markFrames();
  }
}

function setMix(t, decode) {
  S.interp.t = t;
  $("mix").value = t;
  $("mix-value").textContent = `t = ${Number(t).toFixed(2)}`;
  if (S.interp.codeB) S.code = S.imageCode.map((a, i) => (1 - t) * a + t * S.interp.codeB[i]);
  markFrames();
  if (decode) { syncSliders(); requestDecode(); }
}

function markFrames() {
  for (const img of document.querySelectorAll("#interp-strip img")) {
    img.classList.toggle("current", S.interp && Math.abs(Number(img.dataset.t) - S.interp.t) < 0.005);
  }
}

function closeInterp() {
  S.interp = null;
  $("interp").hidden = true;
  $("pick-hint").hidden = true;
  markGallery();
}

async function copyCommand() {
  const where = S.upload !== null ? {reference: S.imageCode, upload_name: S.upload.name}
    : {image_id: S.imageId, split: S.split};
  const r = await api("/api/command", {run: S.run.name, code: S.code, ...where});
  $("command-box").hidden = false;
  $("command-text").textContent = r.command;
  let copied = false;
  try {
    await navigator.clipboard.writeText(r.command);
    copied = true;
  } catch (err) {
    const range = document.createRange();
    range.selectNodeContents($("command-text"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    copied = document.execCommand && document.execCommand("copy");
  }
  $("command-note").textContent = (r.changed.length ? `${r.changed.length} element(s) set` :
    "no element changed yet: the command only reconstructs") + (copied ? " · copied to the clipboard" : "") +
    (r.image ? ` · run it where ${r.image} is, or put the file's path in place of ${r.image} ` +
      "(the browser does not tell the page where the file came from)" : "");
}

async function download(format) {
  // The server writes the file (the same decode /api/decode shows; the code as float32); the page saves it.
  const body = {run: S.run.name, code: S.code, format};
  if (S.upload !== null) body.upload_name = S.upload.name;
  else Object.assign(body, {image_id: S.imageId, split: S.split});
  const r = await fetch("/api/download", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body)});
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).detail || `${r.status} ${r.statusText}`);
  const name = (/filename="([^"]+)"/.exec(r.headers.get("content-disposition") || "") || [])[1] || `edited.${format}`;
  const url = URL.createObjectURL(await r.blob());
  const a = el("a", {href: url, download: name});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  status(`downloaded ${name}`);
}

// -- wiring -------------------------------------------------------------------------------------------------
function wire() {
  const guard = (fn) => () => Promise.resolve(fn()).catch(fail);
  $("page-prev").addEventListener("click", guard(() => loadPage(Math.max(0, S.offset - S.page))));
  $("page-next").addEventListener("click", guard(() => loadPage(S.offset + S.page)));
  $("split-select").addEventListener("change", guard(() => switchSplit($("split-select").value)));
  $("jump").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("jump-id").value;
    const id = Number(text);
    if (text === "" || !Number.isSafeInteger(id) || id < 0) { fail(new Error("image id: a whole number from 0")); return; }
    jump(id).catch(fail);
  });
  for (const b of document.querySelectorAll(".outputs [data-format]")) {
    b.addEventListener("click", guard(() => download(b.dataset.format)));
  }
  // The strip's width decides the page size: when it changes (the window, a scroll bar), page again so
  // every thumbnail stays whole, keeping the picked image on the page.
  // Counted as pending from the first change until the new page is in, so tests wait for it.
  let resized = null;
  new ResizeObserver(() => {
    if (!S.run) return;
    if (resized === null) { S.paging++; setPending(); }
    clearTimeout(resized);
    resized = setTimeout(() => {
      resized = null;
      S.paging--;
      setPending();
      if (pageSize() !== S.page) {
        const at = S.upload === null && S.imageId !== null ? S.imageId : null;
        loadPage(at === null ? S.offset : 0, at).catch(fail);
      }
    }, 100);
  }).observe($("gallery"));
  $("upload").addEventListener("change", guard(async () => {
    const file = $("upload").files[0];
    $("upload").value = "";
    if (file) await encodeUpload(file);
  }));
  $("btn-reset").addEventListener("click", reset);
  $("btn-random").addEventListener("click", guard(randomSample));
  $("btn-interp").addEventListener("click", startInterp);
  $("btn-command").addEventListener("click", guard(copyCommand));
  $("interp-close").addEventListener("click", closeInterp);
  $("mix").addEventListener("input", () => setMix(Number($("mix").value), true));
  $("search-add").addEventListener("click", addExtra);
  $("search-index").addEventListener("keydown", (e) => { if (e.key === "Enter") addExtra(); });
  $("diff-toggle").addEventListener("change", () => {
    S.diff = $("diff-toggle").checked;
    $("panel-diff").hidden = !S.diff;
    if (S.diff) requestDecode();
  });
}

window.addEventListener("DOMContentLoaded", () => {
  wire();
  loadRuns().catch(fail).finally(() => { S.booting = false; setPending(); });
});
