// Lucent viewer canvas: client-side window/level on modality values, zoom/pan, slices and
// frames, original vs AI-enhanced (toggle and split slider), and a saliency heatmap overlay.
// Data comes from the study page (#viewer[data-viewer]) and the /pixels endpoints.
"use strict";
(function () {
  const root = document.getElementById("viewer");
  if (!root) return;
  const cfg = JSON.parse(root.dataset.viewer);
  const canvas = document.getElementById("canvas");
  const ctx = canvas.getContext("2d");
  const $ = (id) => document.getElementById(id);
  const cache = new Map();
  const st = {
    series: 0, slice: 0, wc: null, ww: null, zoom: 1, panX: 0, panY: 0,
    enhanced: false, split: 50, saliency: false, opacity: 0.45, renders: 0, error: "",
  };
  window.lucentViewer = st;

  const seriesOf = () => cfg.series[st.series];
  // Every (instance, frame) of a series, in order: slices of a stack or frames of a cine.
  function slices(list) {
    const out = [];
    for (const [sop, frames] of list) for (let f = 1; f <= frames; f++) out.push([sop, f]);
    return out;
  }
  function url(seriesUid, sop, frame) {
    return `/studies/${cfg.study}/series/${seriesUid}/instances/${sop}/frames/${frame}/pixels`;
  }
  async function load(seriesUid, sop, frame) {
    const key = `${seriesUid}/${sop}/${frame}`;
    if (cache.has(key)) return cache.get(key);
    const p = fetch(url(seriesUid, sop, frame), { credentials: "same-origin" }).then(async (r) => {
      if (!r.ok) throw new Error(`${r.status}: ${await r.text()}`);
      const h = (k) => r.headers.get(k);
      const buf = await r.arrayBuffer();
      const samples = +h("x-samples");
      return {
        rows: +h("x-rows"), cols: +h("x-columns"), samples,
        data: samples === 1 ? new Float32Array(buf) : new Uint8Array(buf),
        wc: +h("x-window-center"), ww: +h("x-window-width"), invert: h("x-invert") === "1",
      };
    });
    cache.set(key, p);
    p.catch(() => cache.delete(key));
    return p;
  }
  // DICOM PS3.3 C.11.2.1.2 linear window, to an offscreen canvas.
  function toBitmap(img, wc, ww) {
    const off = document.createElement("canvas");
    off.width = img.cols; off.height = img.rows;
    const octx = off.getContext("2d");
    const out = octx.createImageData(img.cols, img.rows);
    const o = out.data, d = img.data, n = img.rows * img.cols;
    if (img.samples === 1) {
      const lo = wc - 0.5 - (ww - 1) / 2, span = Math.max(ww - 1, 1e-6);
      for (let i = 0, j = 0; i < n; i++, j += 4) {
        let v = ((d[i] - lo) / span) * 255;
        v = v < 0 ? 0 : v > 255 ? 255 : v;
        if (img.invert) v = 255 - v;
        o[j] = o[j + 1] = o[j + 2] = v; o[j + 3] = 255;
      }
    } else {
      for (let i = 0, j = 0, k = 0; i < n; i++, j += 4, k += 3) {
        o[j] = d[k]; o[j + 1] = d[k + 1]; o[j + 2] = d[k + 2]; o[j + 3] = 255;
      }
    }
    octx.putImageData(out, 0, 0);
    return off;
  }
  function heat(v) { // 0..255 to a blue-green-yellow-red ramp
    const t = v / 255;
    return [255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 3))),
            255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 2))),
            255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 1)))];
  }
  const salCache = new Map();
  async function saliencyFor(sop) {
    const f = cfg.findings.find((x) => x.sop === sop && x.saliency);
    if (!f) return null;
    if (!salCache.has(f.id)) {
      salCache.set(f.id, fetch(`/api/studies/${cfg.study}/findings/${f.id}/saliency`).then(async (r) => {
        if (!r.ok) return null;
        const w = +r.headers.get("x-width"), h = +r.headers.get("x-height");
        const g = new Uint8Array(await r.arrayBuffer());
        const off = document.createElement("canvas");
        off.width = w; off.height = h;
        const c = off.getContext("2d"), im = c.createImageData(w, h);
        for (let i = 0; i < w * h; i++) {
          const [r2, g2, b2] = heat(g[i]);
          im.data.set([r2, g2, b2, g[i]], i * 4);
        }
        c.putImageData(im, 0, 0);
        return off;
      }));
    }
    return salCache.get(f.id);
  }
  function resize() {
    const r = canvas.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(r.width * dpr));
    canvas.height = Math.max(1, Math.round(r.height * dpr));
  }
  let drawing = 0;
  async function draw() {
    const ticket = ++drawing;
    const se = seriesOf();
    if (!se) return;
    const list = slices(se.instances);
    st.slice = Math.max(0, Math.min(st.slice, list.length - 1));
    const [sop, frame] = list[st.slice];
    let img, enh = null, sal = null;
    try {
      img = await load(se.uid, sop, frame);
      if (st.enhanced && se.enhanced) {
        const el = slices(se.enhanced[1]);
        const [esop, eframe] = el[Math.min(st.slice, el.length - 1)];
        enh = await load(se.enhanced[0], esop, eframe);
      }
      if (st.saliency) sal = await saliencyFor(sop);
      st.error = "";
    } catch (e) {
      st.error = String(e);
      $("slice-readout").textContent = `Cannot show this image: ${st.error}`;
      return;
    }
    if (ticket !== drawing) return; // a newer draw is on its way
    if (st.wc === null) { st.wc = img.wc; st.ww = img.ww; }
    const W = canvas.width, H = canvas.height;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, W, H);
    const scale = Math.min(W / img.cols, H / img.rows) * st.zoom;
    const x0 = (W - img.cols * scale) / 2 + st.panX, y0 = (H - img.rows * scale) / 2 + st.panY;
    ctx.imageSmoothingEnabled = scale < 1;
    const place = (bm) => ctx.drawImage(bm, x0, y0, img.cols * scale, img.rows * scale);
    place(toBitmap(img, st.wc, st.ww));
    if (enh) {
      const splitX = (W * st.split) / 100;
      ctx.save(); ctx.beginPath(); ctx.rect(splitX, 0, W - splitX, H); ctx.clip();
      place(toBitmap(enh, st.wc, st.ww));
      ctx.restore();
      ctx.strokeStyle = "#ffb347"; ctx.beginPath(); ctx.moveTo(splitX, 0); ctx.lineTo(splitX, H); ctx.stroke();
    }
    if (sal) {
      const s = Math.min(img.cols, img.rows);
      ctx.globalAlpha = st.opacity;
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(sal, x0 + ((img.cols - s) / 2) * scale, y0 + ((img.rows - s) / 2) * scale, s * scale, s * scale);
      ctx.globalAlpha = 1;
    }
    $("enhanced-banner").hidden = !enh;
    $("wl-readout").textContent = img.samples === 1 ? `W ${Math.round(st.ww)} / L ${Math.round(st.wc)}` : "colour";
    $("slice-readout").textContent = `${se.label}: image ${st.slice + 1} of ${list.length} · zoom ${st.zoom.toFixed(2)}×`;
    st.renders++;
    canvas.dataset.renders = String(st.renders);
    // Warm the neighbours so that scrolling does not wait.
    for (const k of [st.slice + 1, st.slice - 1]) if (list[k]) load(se.uid, list[k][0], list[k][1]).catch(() => {});
  }
  function pickSeries(i) {
    st.series = i; st.slice = 0; st.wc = null; st.ww = null; st.zoom = 1; st.panX = st.panY = 0;
    const se = seriesOf();
    const hasEnh = !!(se && se.enhanced);
    $("enhanced-toggle").disabled = !hasEnh;
    if (!hasEnh) { $("enhanced-toggle").checked = false; st.enhanced = false; }
    $("split").disabled = !st.enhanced;
    const sops = new Set(se ? se.instances.map((x) => x[0]) : []);
    $("saliency-toggle").disabled = !cfg.findings.some((f) => f.saliency && sops.has(f.sop));
    document.querySelectorAll(".series-pick").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.series === (se && se.uid))));
    draw();
  }
  // Pointer: drag for window/level, shift- or middle-drag to pan.
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    drag = { x: e.clientX, y: e.clientY, pan: e.shiftKey || e.button === 1 };
    canvas.focus();
    e.preventDefault();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    drag.x = e.clientX; drag.y = e.clientY;
    if (drag.pan) { st.panX += dx * (window.devicePixelRatio || 1); st.panY += dy * (window.devicePixelRatio || 1); }
    else if (st.ww !== null) {
      const k = Math.max(st.ww, 1) / 200; // a 200-pixel drag doubles or halves the width
      st.ww = Math.max(1, st.ww + dx * k);
      st.wc = st.wc + dy * k;
      $("preset").value = "";
    }
    draw();
  });
  const endDrag = () => { drag = null; };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (e.ctrlKey) st.zoom = Math.min(16, Math.max(0.25, st.zoom * (e.deltaY < 0 ? 1.1 : 1 / 1.1)));
    else st.slice += e.deltaY > 0 ? 1 : -1;
    draw();
  }, { passive: false });
  canvas.addEventListener("keydown", (e) => {
    const k = e.key;
    if (k === "ArrowDown" || k === "ArrowRight" || k === "PageDown") st.slice++;
    else if (k === "ArrowUp" || k === "ArrowLeft" || k === "PageUp") st.slice--;
    else if (k === "+" || k === "=") st.zoom = Math.min(16, st.zoom * 1.25);
    else if (k === "-") st.zoom = Math.max(0.25, st.zoom / 1.25);
    else if (k === "r" || k === "R") { st.zoom = 1; st.panX = st.panY = 0; st.wc = st.ww = null; }
    else return;
    e.preventDefault();
    draw();
  });
  $("preset").addEventListener("change", (e) => {
    const v = e.target.value;
    if (v) { const [c, w] = v.split(",").map(Number); st.wc = c; st.ww = w; } else { st.wc = st.ww = null; }
    draw();
  });
  $("reset").addEventListener("click", () => { st.zoom = 1; st.panX = st.panY = 0; st.wc = st.ww = null; $("preset").value = ""; draw(); });
  $("enhanced-toggle").addEventListener("change", (e) => {
    st.enhanced = e.target.checked; $("split").disabled = !st.enhanced;
    if (st.enhanced) { st.split = 50; $("split").value = "50"; }
    draw();
  });
  $("split").addEventListener("input", (e) => { st.split = +e.target.value; draw(); });
  $("saliency-toggle").addEventListener("change", (e) => { st.saliency = e.target.checked; draw(); });
  $("saliency-opacity").addEventListener("input", (e) => { st.opacity = +e.target.value / 100; draw(); });
  document.querySelectorAll(".series-pick").forEach((b) => b.addEventListener("click", () => {
    const i = cfg.series.findIndex((s) => s.uid === b.dataset.series);
    if (i >= 0) pickSeries(i);
  }));
  window.addEventListener("resize", () => { resize(); draw(); });
  resize();
  pickSeries(0);
})();
