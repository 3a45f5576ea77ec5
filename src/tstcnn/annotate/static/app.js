// tstcnn annotate: the page. Plain ES module, no build step.
// Frames are the original video's decoded frames: frame = floor(t * fps + eps), and a seek goes to the middle of a
// frame, (frame + 0.5) / fps, because the browser's currentTime is not frame exact.

const EPS = 1e-3;
const SPEEDS = [0.1, 0.25, 0.5, 1, 2, 4];
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);

const state = {
  classes: [], videos: [], annotators: [], model: "model",
  video: null, fps: 30, frames: 1, frame: 0,
  strokes: [], byId: new Map(), selected: null, pendingBegin: null, label: null,
  others: new Set(), speed: 3, viewSpan: 0, viewStart: 0,
  disagreements: [], revision: -1, review: null, drawQueued: false,
};

// ---------------------------------------------------------------------------------------------- server calls

async function api(method, path, body) {
  const options = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.headers["X-Tstcnn-Token"] = CSRF;
    options.body = JSON.stringify(body);
  } else if (method !== "GET") {
    options.headers["X-Tstcnn-Token"] = CSRF;
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    let detail = data.detail ?? response.statusText;
    if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    throw new Error(detail);
  }
  return data;
}

function say(text, isError = false) {
  const box = $("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
}

async function attempt(action) {
  try {
    await action();
  } catch (error) {
    say(error.message, true);
  }
}

// ---------------------------------------------------------------------------------------------- who and what

function me() {
  return $("annotator").value.trim();
}

function needName() {
  if (!me()) {
    $("annotator").focus();
    throw new Error("type your name first (top left)");
  }
  return me();
}

function shown(stroke) {
  if (stroke.annotator === me()) return true;
  if (stroke.status === "rejected") return false;  // another reviewer's refusal
  return state.others.has(stroke.annotator);
}

function lanes() {
  const names = [me() || "(you)"];
  for (const name of state.annotators) if (name !== me() && state.others.has(name)) names.push(name);
  return names;
}

function reviewedBy(name) {
  const done = new Map();
  for (const s of state.strokes) if (s.annotator === name && s.origin !== null) done.set(s.origin, s);
  return done;
}

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
  "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1",
  "#636363", "#969696"];

function classColour(label) {
  return PALETTE[Math.max(0, state.classes.indexOf(label)) % PALETTE.length];  // by class order: stable, distinct
}

// ---------------------------------------------------------------------------------------------- loading

async function loadProject() {
  const info = await api("GET", "/api/project");
  state.classes = info.classes;
  state.videos = info.videos;
  state.model = info.model_annotator;
  const labels = $("label");
  labels.replaceChildren(...info.classes.map((c) => new Option(c, c)));
  state.label = localStorage.getItem("tstcnn.label") || info.classes[0];
  if (!info.classes.includes(state.label)) state.label = info.classes[0];
  labels.value = state.label;
  const videos = $("video");
  videos.replaceChildren(...info.videos.map((v) => new Option(`${v.name} (${v.frames} frames)`, v.id)));
  if (!info.videos.length) {
    say("no videos in this project: start tstcnn annotate PROJECT VIDEO…", true);
    return;
  }
  const wanted = Number(new URLSearchParams(location.hash.slice(1)).get("video") || localStorage.getItem("tstcnn.video"));
  const first = info.videos.find((v) => v.id === wanted) || info.videos[0];
  videos.value = first.id;
  await openVideo(first.id);
}

async function openVideo(id) {
  say("opening the video…");
  const info = await api("GET", `/api/videos/${id}`);
  state.video = info;
  state.fps = info.play_fps;
  state.frames = info.frames;
  state.selected = null;
  state.pendingBegin = null;
  state.viewSpan = Math.min(info.frames, Math.max(60, Math.round(10 * info.play_fps)));
  $("frames").textContent = info.frames - 1;
  $("goto").max = info.frames - 1;
  const media = $("media");
  media.src = `/api/videos/${id}/media`;
  media.playbackRate = SPEEDS[state.speed];
  localStorage.setItem("tstcnn.video", id);
  const params = new URLSearchParams(location.hash.slice(1));
  const frame = params.get("video") === String(id) ? Number(params.get("frame") || 0) : 0;
  await new Promise((resolve) => {
    if (media.readyState >= 1) resolve();
    else media.addEventListener("loadedmetadata", resolve, { once: true });
    media.addEventListener("error", resolve, { once: true });
  });
  seek(frame);
  await loadStrokes();
  say(info.proxy ? `${info.name}: playing a proxy (frame numbers are the original's)` : info.name);
  document.body.dataset.ready = "1";
}

async function loadStrokes() {
  if (!state.video) return;
  const data = await api("GET", `/api/videos/${state.video.id}/strokes`);
  state.revision = data.revision;
  state.strokes = data.strokes;
  state.byId = new Map(data.strokes.map((s) => [s.id, s]));
  if (state.selected !== null && !state.byId.has(state.selected)) state.selected = null;
  state.annotators = [...new Set(data.strokes.map((s) => s.annotator))].sort();
  state.listKey = null;
  if (state.annotators.includes(state.model) && !state.othersTouched) state.others.add(state.model);
  renderOthers();
  await Promise.all([loadDisagreements(), loadReview()]);
  renderList();
  draw();
}

async function loadDisagreements() {
  state.disagreements = [];
  if (!$("show-disagreements").checked || !state.video) return;
  const names = lanes().filter((n) => n !== "(you)");
  const query = encodeURIComponent(names.join(","));
  const data = await api("GET", `/api/videos/${state.video.id}/disagreements?annotators=${query}`);
  state.disagreements = data.disagreements;
}

async function loadReview() {
  const hasModel = state.strokes.some((s) => s.annotator === state.model);
  $("review").hidden = !hasModel;
  if (!hasModel) return;
  const data = await api("GET", `/api/review${me() ? `?annotator=${encodeURIComponent(me())}` : ""}`);
  state.review = data;
  const mine = data.reviewers[me()];
  const proposals = state.strokes.filter((s) => s.annotator === state.model && s.status === "proposed");
  const done = reviewedBy(me());
  const pending = proposals.filter((p) => !done.has(p.id)).length;
  $("review-counts").textContent = `${proposals.length} on this video, ${pending} to review`;
  const share = data.overall.accepted_unchanged;
  const own = mine && mine.accepted_unchanged !== null ? ` (yours ${(100 * mine.accepted_unchanged).toFixed(0)}%)` : "";
  $("accepted-share").textContent = share === null ? "– (none reviewed)"
    : `${(100 * share).toFixed(0)}% of ${data.overall.reviewed} reviewed${own}`;
}

async function poll() {
  try {
    if (state.video && !document.hidden) {
      const data = await api("GET", "/api/revision");
      if (data.revision !== state.revision) await loadStrokes();
    }
  } catch (error) {
    say(`lost the server: ${error.message}`, true);
  }
  setTimeout(poll, 2000);
}

// ---------------------------------------------------------------------------------------------- playing

function clampFrame(frame) {
  return Math.max(0, Math.min(state.frames - 1, Math.round(frame)));
}

function seek(frame) {
  const media = $("media");
  state.frame = clampFrame(frame);
  if (!media.paused) media.pause();
  media.currentTime = (state.frame + 0.5) / state.fps;
  follow();
  draw();
}

function frameOfTime(t) {
  return clampFrame(Math.floor(t * state.fps + EPS));
}

function onFrame(_now, meta) {
  const media = $("media");
  if (media.paused) return;  // a frame painted after the pause: the seek that ended playing owns the frame number
  state.frame = frameOfTime(meta ? meta.mediaTime : media.currentTime);
  follow();
  draw();
  if (!media.paused) watch();
}

function watch() {
  const media = $("media");
  if (media.requestVideoFrameCallback) media.requestVideoFrameCallback(onFrame);
  else requestAnimationFrame(() => onFrame(0, null));
}

function togglePlay() {
  const media = $("media");
  if (media.paused) {
    media.play().then(watch).catch((error) => say(error.message, true));
  } else {
    media.pause();
    // land on the middle of the frame last painted (counted by requestVideoFrameCallback), not between two frames
    seek(media.requestVideoFrameCallback ? state.frame : frameOfTime(media.currentTime));
  }
}

function setSpeed(index) {
  state.speed = Math.max(0, Math.min(SPEEDS.length - 1, index));
  $("media").playbackRate = SPEEDS[state.speed];
  draw();
}

function follow() {
  const span = state.viewSpan;
  if (state.frame < state.viewStart || state.frame >= state.viewStart + span) {
    state.viewStart = Math.max(0, Math.min(state.frames - span, state.frame - Math.floor(span / 4)));
  }
}

function zoom(factor) {
  const span = Math.round(state.viewSpan * factor);
  state.viewSpan = Math.max(20, Math.min(state.frames, span));
  state.viewStart = Math.max(0, Math.min(state.frames - state.viewSpan, state.frame - Math.floor(state.viewSpan / 2)));
  draw();
}

// ---------------------------------------------------------------------------------------------- editing

function selectedStroke() {
  return state.selected === null ? null : state.byId.get(state.selected) || null;
}

async function saved(stroke, text) {
  if (stroke) {  // known at once, so a key pressed before the reload below acts on it
    state.strokes = state.strokes.filter((s) => s.id !== stroke.id).concat([stroke]);
    state.listKey = null;
    state.byId.set(stroke.id, stroke);
    state.selected = stroke.id;
  }
  await loadStrokes();
  say(text);
}

async function markBegin() {
  const name = needName();
  const stroke = selectedStroke();
  if (stroke && stroke.annotator === name) {
    const updated = await api("PATCH", `/api/strokes/${stroke.id}`, { annotator: name, begin: state.frame });
    return saved(updated, `begin moved to frame ${state.frame}`);
  }
  if (stroke && stroke.annotator === state.model) return correct(stroke, { begin: state.frame });
  state.selected = null;
  state.pendingBegin = state.frame;
  draw();
  say(`begin at frame ${state.frame}: go to the stroke's last frame and press E`);
}

async function markEnd() {
  const name = needName();
  const end = state.frame + 1;  // the current frame is the stroke's last: end is exclusive
  if (state.pendingBegin !== null) {
    const begin = Math.min(state.pendingBegin, state.frame);
    const last = Math.max(state.pendingBegin, state.frame) + 1;
    const stroke = await api("POST", `/api/videos/${state.video.id}/strokes`,
      { annotator: name, begin, end: last, label: state.label });
    state.pendingBegin = null;
    return saved(stroke, `saved ${stroke.label}, frames ${begin}–${last - 1}`);
  }
  const stroke = selectedStroke();
  if (stroke && stroke.annotator === name) {
    const updated = await api("PATCH", `/api/strokes/${stroke.id}`, { annotator: name, end });
    return saved(updated, `end moved to frame ${state.frame}`);
  }
  if (stroke && stroke.annotator === state.model) return correct(stroke, { end });
  throw new Error("press B on the stroke's first frame first");
}

async function relabel(label) {
  state.label = label;
  $("label").value = label;
  localStorage.setItem("tstcnn.label", label);
  const stroke = selectedStroke();
  if (!stroke) return say(`class for the next stroke: ${label}`);
  const name = needName();
  if (stroke.annotator === name) {
    const updated = await api("PATCH", `/api/strokes/${stroke.id}`, { annotator: name, label });
    return saved(updated, `relabelled: ${label}`);
  }
  if (stroke.annotator === state.model) return correct(stroke, { label });
  say(`class for the next stroke: ${label}`);
}

async function deleteSelected() {
  const name = needName();
  const stroke = selectedStroke();
  if (!stroke || stroke.annotator !== name) throw new Error("select one of your strokes first (N / P)");
  await api("DELETE", `/api/strokes/${stroke.id}`, { annotator: name });
  state.selected = null;
  await saved(null, "deleted (Z to undo)");
}

async function undo() {
  const name = needName();
  const data = await api("POST", `/api/videos/${state.video.id}/undo`, { annotator: name });
  await saved(null, data.undone ? "undone" : "nothing to undo");
}

function proposalOf(stroke) {
  if (!stroke) return null;
  if (stroke.annotator === state.model && stroke.status === "proposed") return stroke;
  if (stroke.origin !== null) return state.byId.get(stroke.origin) || null;
  return null;
}

async function decide(decision) {
  const name = needName();
  const proposal = proposalOf(selectedStroke());
  if (!proposal) throw new Error("select a model proposal first (R)");
  const stroke = await api("POST", `/api/strokes/${proposal.id}/review`, { annotator: name, decision });
  await saved(decision === "rejected" ? proposal : stroke, `${decision}: ${proposal.label}, frames ${proposal.begin}–${proposal.end - 1}`);
}

async function correct(proposal, changes) {
  const name = needName();
  const mine = reviewedBy(name).get(proposal.id);
  const base = mine && mine.status !== "rejected" ? mine : proposal;
  const body = { annotator: name, decision: "corrected", begin: base.begin, end: base.end, label: base.label, ...changes };
  const stroke = await api("POST", `/api/strokes/${proposal.id}/review`, body);
  await saved(stroke, `corrected: ${stroke.label}, frames ${stroke.begin}–${stroke.end - 1}`);
}

function visibleStrokes() {
  return state.strokes.filter(shown).sort((a, b) => a.begin - b.begin || a.end - b.end || a.id - b.id);
}

function jump(direction) {
  const strokes = visibleStrokes();
  if (!strokes.length) return say("no strokes shown");
  let target;
  if (direction > 0) target = strokes.find((s) => s.begin > state.frame) || strokes[0];
  else target = [...strokes].reverse().find((s) => s.begin < state.frame) || strokes[strokes.length - 1];
  state.selected = target.id;
  seek(target.begin);
  renderList();
  say(`${target.annotator}: ${target.label}, frames ${target.begin}–${target.end - 1}`);
}

function nextProposal() {
  const name = needName();
  const done = reviewedBy(name);
  let pending = state.strokes.filter((s) => s.annotator === state.model && s.status === "proposed" && !done.has(s.id));
  if (!pending.length) return say("every proposal on this video is reviewed");
  if ($("lowest-first").checked) pending = pending.sort((a, b) => (a.confidence ?? 1) - (b.confidence ?? 1) || a.begin - b.begin);
  else pending = pending.sort((a, b) => a.begin - b.begin);
  const after = $("lowest-first").checked ? pending[0] : pending.find((s) => s.begin > state.frame) || pending[0];
  state.others.add(state.model);
  state.selected = after.id;
  seek(after.begin);
  renderOthers();
  renderList();
  const top3 = (after.top3 || []).map(([c, p]) => `${c} ${(100 * p).toFixed(0)}%`).join(", ");
  say(`proposal ${after.label} (confidence ${((after.confidence ?? 0) * 100).toFixed(0)}%; ${top3}): A accept, X reject, B/E/L correct`);
}

// ---------------------------------------------------------------------------------------------- class picker

function openPicker() {
  const dialog = $("picker");
  const filter = $("picker-filter");
  filter.value = "";
  fillPicker();
  dialog.showModal();
  filter.focus();
}

function fillPicker() {
  const words = $("picker-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const matches = state.classes.filter((c) => words.every((w) => c.toLowerCase().includes(w)));
  const list = $("picker-list");
  list.replaceChildren(...matches.map((c, i) => {
    const item = document.createElement("li");
    item.textContent = c;
    item.dataset.label = c;
    item.setAttribute("role", "option");
    if (i === 0) item.classList.add("active");
    item.addEventListener("click", () => pick(c));
    return item;
  }));
}

function movePicker(step) {
  const items = [...$("picker-list").children];
  if (!items.length) return;
  const index = items.findIndex((i) => i.classList.contains("active"));
  items[index]?.classList.remove("active");
  const next = items[(index + step + items.length) % items.length];
  next.classList.add("active");
  next.scrollIntoView({ block: "nearest" });
}

function pick(label) {
  $("picker").close();
  $("picker-filter").blur();  // keys go to the page again, not to the closed dialog's field
  attempt(() => relabel(label));
}

// ---------------------------------------------------------------------------------------------- drawing

function draw() {
  if (state.drawQueued) return;
  state.drawQueued = true;
  requestAnimationFrame(() => {
    state.drawQueued = false;
    drawStatus();
    drawTimeline();
    drawOverview();
  });
}

function drawStatus() {
  $("frame").textContent = state.frame;
  $("time").textContent = `${(state.frame / state.fps).toFixed(3)} s`;
  $("speed").textContent = `${SPEEDS[state.speed]}×`;
  $("pending").textContent = state.pendingBegin !== null ? `· begun at ${state.pendingBegin} (E ends)` : "";
  document.body.dataset.frame = state.frame;
  document.body.dataset.selected = state.selected ?? "";
  const place = `#video=${state.video?.id ?? ""}&frame=${state.frame}`;
  if (state.video && $("media").paused && location.hash !== place) history.replaceState(null, "", place);  // a reload comes back here
}

function sizeCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  return [context, width, height];
}

function drawTimeline() {
  const canvas = $("timeline");
  const [g, width, height] = sizeCanvas(canvas);
  g.clearRect(0, 0, width, height);
  const start = state.viewStart;
  const span = state.viewSpan;
  const x = (frame) => ((frame - start) / span) * width;
  const names = lanes();
  const top = 16;
  const rows = names.length + (state.disagreements.length ? 1 : 0);
  const laneHeight = Math.max(14, Math.min(34, (height - top - 4) / Math.max(1, rows)));
  // ticks: about every 80 px, on round frame counts
  g.fillStyle = "#666";
  g.font = "10px sans-serif";
  const step = niceStep((span * 80) / width);
  for (let f = Math.ceil(start / step) * step; f < start + span; f += step) {
    g.fillRect(x(f), 0, 1, 5);
    g.fillText(String(f), x(f) + 2, 11);
  }
  let lane = 0;
  if (state.disagreements.length) {
    const y = top;
    g.fillStyle = "#b00";
    g.fillText("disagree", 2, y + laneHeight - 4);
    for (const d of state.disagreements) {
      if (d.end < start || d.begin > start + span) continue;
      g.fillStyle = "rgba(200, 0, 0, 0.35)";
      g.fillRect(x(d.begin), y, Math.max(2, x(d.end) - x(d.begin)), laneHeight - 2);
    }
    lane = 1;
  }
  const laneOf = new Map(names.map((n, i) => [n === "(you)" ? "" : n, i + lane]));
  for (const [i, name] of names.entries()) {
    g.fillStyle = i === 0 ? "#222" : "#777";
    g.fillText(name, 2, top + (i + lane) * laneHeight + laneHeight - 4);
  }
  const done = reviewedBy(me());
  for (const s of state.strokes) {
    if (s.end < start || s.begin > start + span || !shown(s)) continue;
    const row = laneOf.get(s.annotator === me() ? (me() ? me() : "") : s.annotator);
    if (row === undefined) continue;
    const y = top + row * laneHeight;
    const left = x(s.begin);
    const w = Math.max(2, x(s.end) - left);
    const reviewed = s.annotator === state.model && done.has(s.id);
    g.globalAlpha = s.status === "rejected" ? 0.25 : reviewed ? 0.45 : 1;
    g.fillStyle = classColour(s.label);
    g.fillRect(left, y + 2, w, laneHeight - 6);
    if (s.status === "proposed" || s.status === "rejected") {
      g.strokeStyle = "#000";
      g.setLineDash([4, 3]);
      g.strokeRect(left + 0.5, y + 2.5, w - 1, laneHeight - 7);
      g.setLineDash([]);
    }
    g.globalAlpha = 1;
    if (s.id === state.selected) {
      g.strokeStyle = "#000";
      g.lineWidth = 3;
      g.strokeRect(left, y + 1, w, laneHeight - 4);
      g.lineWidth = 1;
    }
    if (w > 40) {
      g.fillStyle = "#fff";
      g.save();
      g.beginPath();
      g.rect(left, y, w, laneHeight);
      g.clip();
      g.fillText(s.label, left + 3, y + laneHeight - 8);
      g.restore();
    }
  }
  if (state.pendingBegin !== null) {
    g.fillStyle = "rgba(0, 90, 255, 0.25)";
    const a = Math.min(state.pendingBegin, state.frame);
    const b = Math.max(state.pendingBegin, state.frame) + 1;
    g.fillRect(x(a), top + lane * laneHeight, x(b) - x(a), laneHeight - 2);
  }
  // the current frame: a band one frame wide (a line when frames are narrower than 2 px)
  g.fillStyle = "rgba(255, 0, 0, 0.8)";
  g.fillRect(x(state.frame), 0, Math.max(1.5, x(state.frame + 1) - x(state.frame)), height);
}

function niceStep(raw) {
  const steps = [1, 2, 5, 10, 20, 30, 60, 120, 240, 600, 1200, 3000, 6000, 12000, 30000, 60000, 120000];
  return steps.find((s) => s >= raw) || 240000;
}

function drawOverview() {
  const canvas = $("overview");
  const [g, width, height] = sizeCanvas(canvas);
  g.clearRect(0, 0, width, height);
  g.fillStyle = "#eee";
  g.fillRect(0, 0, width, height);
  const x = (frame) => (frame / state.frames) * width;
  for (const s of state.strokes) {
    if (!shown(s)) continue;
    g.fillStyle = classColour(s.label);
    const y = s.annotator === me() ? 4 : 18;
    g.fillRect(x(s.begin), y, Math.max(1, x(s.end) - x(s.begin)), 12);
  }
  g.strokeStyle = "#333";
  g.strokeRect(x(state.viewStart) + 0.5, 0.5, Math.max(2, x(state.viewStart + state.viewSpan) - x(state.viewStart)), height - 1);
  g.fillStyle = "red";
  g.fillRect(x(state.frame), 0, 1.5, height);
}

function renderOthers() {
  const box = $("others");
  const names = state.annotators.filter((n) => n !== me());
  const boxes = names.map((name) => {
    const label = document.createElement("label");
    const check = document.createElement("input");
    check.type = "checkbox";
    check.checked = state.others.has(name);
    check.dataset.annotator = name;
    check.addEventListener("change", () => {
      state.othersTouched = true;
      if (check.checked) state.others.add(name);
      else state.others.delete(name);
      attempt(async () => { await loadDisagreements(); renderList(); draw(); });
    });
    label.append(check, ` ${name}`);
    return label;
  });
  box.replaceChildren(...(boxes.length ? [document.createTextNode("show: "), ...boxes] : []));
}

function renderList() {
  const body = $("strokes").tBodies[0];
  const key = `${state.revision}|${me()}|${[...state.others].sort().join(",")}|${state.strokes.length}|${state.disagreements.length}`;
  if (key === state.listKey) {  // same rows: only the selection moves (a long list is not rebuilt on every jump)
    body.querySelector("tr.selected")?.classList.remove("selected");
    const row = body.querySelector(`tr[data-id="${state.selected}"]`);
    if (row) {
      row.classList.add("selected");
      row.scrollIntoView({ block: "nearest" });
    }
    return;
  }
  state.listKey = key;
  const rows = visibleStrokes().map((s) => {
    const row = document.createElement("tr");
    row.dataset.id = s.id;
    if (s.id === state.selected) row.classList.add("selected");
    const status = s.annotator === state.model && s.confidence !== null
      ? `${s.status} ${(100 * s.confidence).toFixed(0)}%` : s.status;
    for (const text of [s.annotator, s.begin, s.end - 1, s.label, status]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    if (s.top3) row.title = s.top3.map(([c, p]) => `${c}: ${(100 * p).toFixed(1)}%`).join("\n");
    row.addEventListener("click", () => { state.selected = s.id; seek(s.begin); renderList(); });
    return row;
  });
  body.replaceChildren(...rows);
  const list = $("disagreements");
  list.replaceChildren(...state.disagreements.map((d) => {
    const item = document.createElement("li");
    item.textContent = `${d.kind} at ${d.begin}–${d.end - 1}: ${d.detail}`;
    item.addEventListener("click", () => seek(d.begin));
    return item;
  }));
}

// ---------------------------------------------------------------------------------------------- events

function typing(target) {
  return target instanceof HTMLInputElement && target.type !== "checkbox" || target instanceof HTMLSelectElement
    || target instanceof HTMLTextAreaElement;
}

const KEYS = {
  " ": () => togglePlay(),
  "ArrowRight": (e) => seek(state.frame + (e.shiftKey ? 10 : 1)),
  "ArrowLeft": (e) => seek(state.frame - (e.shiftKey ? 10 : 1)),
  "ArrowUp": () => seek(state.frame + Math.round(state.fps)),
  "ArrowDown": () => seek(state.frame - Math.round(state.fps)),
  "Home": () => seek(0),
  "End": () => seek(state.frames - 1),
  "g": () => { $("goto").value = ""; $("goto").focus(); },
  "[": () => setSpeed(state.speed - 1),
  "]": () => setSpeed(state.speed + 1),
  "n": () => jump(1),
  "p": () => jump(-1),
  "b": () => attempt(markBegin),
  "e": () => attempt(markEnd),
  "l": () => openPicker(),
  "Delete": () => attempt(deleteSelected),
  "Backspace": () => attempt(deleteSelected),
  "z": () => attempt(undo),
  "Escape": () => { state.pendingBegin = null; state.selected = null; renderList(); draw(); say(""); },
  "a": () => attempt(() => decide("accepted")),
  "x": () => attempt(() => decide("rejected")),
  "c": () => attempt(async () => { const p = proposalOf(selectedStroke()); if (!p) throw new Error("select a model proposal first (R)"); await correct(p, {}); }),
  "r": () => attempt(async () => nextProposal()),
  "+": () => zoom(0.5),
  "=": () => zoom(0.5),
  "-": () => zoom(2),
  "?": () => $("help").showModal(),
};

function onKey(event) {
  if (event.target === $("picker-filter") && $("picker").open) {
    if (event.key === "ArrowDown") { movePicker(1); event.preventDefault(); }
    else if (event.key === "ArrowUp") { movePicker(-1); event.preventDefault(); }
    else if (event.key === "Enter") {
      event.preventDefault();
      const active = $("picker-list").querySelector(".active");
      if (active) pick(active.dataset.label);
    }
    return;
  }
  if (event.target === $("goto")) {
    if (event.key === "Enter") {
      event.preventDefault();
      const value = Number($("goto").value);
      $("goto").blur();
      if (Number.isInteger(value)) seek(value);
    } else if (event.key === "Escape") {
      $("goto").blur();
    }
    return;
  }
  if (typing(event.target) || document.querySelector("dialog[open]")) return;
  if (event.altKey || event.metaKey) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (event.ctrlKey && key !== "z") return;
  const action = KEYS[key];
  if (!action) return;
  event.preventDefault();
  if (event.target instanceof HTMLElement && event.target !== document.body) event.target.blur();
  action(event);
}

function timelineFrame(event, canvas, start, span) {
  const rect = canvas.getBoundingClientRect();
  return clampFrame(start + Math.floor(((event.clientX - rect.left) / rect.width) * span));
}

function onTimelineClick(event) {
  const canvas = $("timeline");
  const frame = timelineFrame(event, canvas, state.viewStart, state.viewSpan);
  const names = lanes();
  const lane0 = state.disagreements.length ? 1 : 0;
  const rows = names.length + lane0;
  const laneHeight = Math.max(14, Math.min(34, (canvas.clientHeight - 16 - 4) / Math.max(1, rows)));
  const row = Math.floor((event.clientY - canvas.getBoundingClientRect().top - 16) / laneHeight) - lane0;
  const name = names[row] === "(you)" ? me() : names[row];
  const hit = state.strokes.find((s) => shown(s) && s.annotator === name && s.begin <= frame && frame < s.end);
  state.selected = hit ? hit.id : null;
  seek(frame);
  renderList();
}

function onOverviewClick(event) {
  seek(timelineFrame(event, $("overview"), 0, state.frames));
}

function init() {
  $("annotator").value = localStorage.getItem("tstcnn.annotator") || "";
  $("annotator").addEventListener("change", () => {
    const name = me();
    localStorage.setItem("tstcnn.annotator", name);
    state.others.delete(name);
    attempt(loadStrokes);
  });
  $("annotator").addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === "Escape") e.target.blur(); });
  $("video").addEventListener("change", (e) => { e.target.blur(); attempt(() => openVideo(Number(e.target.value))); });
  $("label").addEventListener("change", (e) => { e.target.blur(); attempt(() => relabel(e.target.value)); });
  $("show-disagreements").addEventListener("change", () => attempt(async () => { await loadDisagreements(); renderList(); draw(); }));
  $("picker-filter").addEventListener("input", fillPicker);
  $("picker").addEventListener("close", () => $("picker-filter").blur());
  $("help-button").addEventListener("click", () => $("help").showModal());
  $("timeline").addEventListener("click", onTimelineClick);
  $("overview").addEventListener("click", onOverviewClick);
  $("timeline").addEventListener("wheel", (e) => { e.preventDefault(); zoom(e.deltaY > 0 ? 1.25 : 0.8); }, { passive: false });
  const media = $("media");
  media.addEventListener("pause", () => draw());
  media.addEventListener("error", () => say("the browser cannot play this video", true));
  document.addEventListener("keydown", onKey);
  window.addEventListener("resize", draw);
  attempt(loadProject).then(() => setTimeout(poll, 2000));
}

init();
