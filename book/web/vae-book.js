/* vae-book.js: what the rendered book computes with no kernel.
 *
 * The pages hold <div class="vae-explorer" data-kind=... data-settings=JSON> and
 * <div class="vae-answer" data-check=JSON> elements, written by vae_numpy.web. This
 * file builds each one: explorers load their data (assets written at build time by
 * vae_numpy.web.export_asset, next to this file in assets/) and redraw as the reader
 * moves a slider or the pointer; answer boxes judge a typed number with the rules of
 * vae_numpy.exercises.NumberCheck. No framework and nothing from the network: assets
 * load through <script> tags, so a page opened from file:// works too.
 *
 * The last state of every explorer is kept on its element (el.vaeState: the code z,
 * the image as a Float64Array, the milliseconds the decode took), so the browser tests
 * can hold the page's pixels against NumPy's.
 */
(function () {
  "use strict";

  const SCRIPT_URL = document.currentScript ? document.currentScript.src : "";
  const ASSET_BASE = SCRIPT_URL.slice(0, SCRIPT_URL.lastIndexOf("/") + 1) + "assets/";
  const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  // -- assets ---------------------------------------------------------------------------
  const pending = {};
  function loadAsset(name) {
    const registry = (window.VAE_BOOK_ASSETS = window.VAE_BOOK_ASSETS || {});
    if (registry[name]) return Promise.resolve(registry[name]);
    if (!pending[name]) {
      pending[name] = new Promise(function (resolve, reject) {
        const tag = document.createElement("script");
        tag.src = ASSET_BASE + name + ".js";
        tag.onload = function () {
          if (registry[name]) resolve(registry[name]);
          else reject(new Error("asset " + name + " did not register itself"));
        };
        tag.onerror = function () { reject(new Error("could not load asset " + tag.src)); };
        document.head.appendChild(tag);
      });
    }
    return pending[name];
  }

  function f32(d) {  // {shape, f32: base64 float32 | u8: base64 bytes / 255} -> Float32Array
    const bytes = atob(d.f32 || d.u8);
    const buf = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) buf[i] = bytes.charCodeAt(i);
    if (d.u8 === undefined) return new Float32Array(buf.buffer);
    const out = new Float32Array(buf.length);
    for (let i = 0; i < buf.length; i++) out[i] = buf[i] / 255;
    return out;
  }

  // -- the decoder: h = act(h @ W + b), layer by layer, then the image ---------------
  function makeDecoder(asset) {
    const layers = asset.layers.map(function (l) {
      return {W: f32(l.W), b: f32(l.b), n_in: l.W.shape[0], n_out: l.W.shape[1], act: l.act};
    });
    const sigmoid = asset.output === "sigmoid";
    function decode(z) {
      let h = Float64Array.from(z);
      for (const l of layers) {
        const out = new Float64Array(l.n_out);
        for (let j = 0; j < l.n_out; j++) out[j] = l.b[j];
        for (let i = 0; i < l.n_in; i++) {      // row i of W scaled by h[i]: reads W in order
          const hi = h[i];
          if (hi === 0) continue;
          const row = i * l.n_out;
          for (let j = 0; j < l.n_out; j++) out[j] += hi * l.W[row + j];
        }
        if (l.act === "relu") for (let j = 0; j < l.n_out; j++) out[j] = out[j] > 0 ? out[j] : 0;
        else if (l.act === "tanh") for (let j = 0; j < l.n_out; j++) out[j] = Math.tanh(out[j]);
        h = out;
      }
      if (sigmoid) for (let j = 0; j < h.length; j++) h[j] = 1 / (1 + Math.exp(-h[j]));
      return h;
    }
    return {decode: decode, latentDim: asset.latent_dim, shape: asset.image_shape};
  }

  // -- small DOM helpers -------------------------------------------------------------
  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "class") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    for (const c of children || []) e.appendChild(c);
    return e;
  }

  function slider(label, min, max, step, value, onInput) {
    const input = el("input", {type: "range", min: min, max: max, step: step, value: value,
                               "aria-label": label});
    const readout = el("span", {class: "vae-readout"});
    const row = el("label", {class: "vae-slider"}, [el("span", {text: label}), input, readout]);
    function show() { readout.textContent = Number(input.value).toFixed(2); }
    input.addEventListener("input", function () { show(); onInput(Number(input.value)); });
    show();
    return {row: row, input: input};
  }

  function paintImage(canvas, image, shape) {  // gray_r: 0 is white, 1 is black
    const [rows, cols] = shape;
    const ctx = canvas.getContext("2d");
    const small = ctx.createImageData(cols, rows);
    for (let i = 0; i < rows * cols; i++) {
      const v = Math.round(255 * (1 - Math.min(1, Math.max(0, image[i]))));
      small.data[4 * i] = small.data[4 * i + 1] = small.data[4 * i + 2] = v;
      small.data[4 * i + 3] = 255;
    }
    const tmp = document.createElement("canvas");
    tmp.width = cols; tmp.height = rows;
    tmp.getContext("2d").putImageData(small, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(tmp, 0, 0, canvas.width, canvas.height);
  }

  function timedDecode(root, decoder, z, canvas, caption) {
    const t0 = performance.now();
    const image = decoder.decode(z);
    const ms = performance.now() - t0;
    paintImage(canvas, image, decoder.shape);
    root.vaeState = {z: Array.from(z), image: image, ms: ms};
    if (caption) caption.textContent = "decoded z = (" +
      Array.from(z).map(function (v) { return (v >= 0 ? "+" : "") + v.toFixed(2); }).join(", ") + ")";
    root.dispatchEvent(new CustomEvent("vae-redraw"));
  }

  // -- explorers ---------------------------------------------------------------------
  const EXPLORERS = {};

  // The 2-D latent plane: the codes as dots; the pointer's point decoded beside it.
  EXPLORERS["latent-plane"] = function (root, s, assets) {
    const decoder = makeDecoder(assets[s.asset]);
    const codes = f32(s.codes), labels = s.labels, lim = s.lim;
    const size = 300;
    const plane = el("canvas", {width: size, height: size, class: "vae-plane",
                                "aria-label": "latent plane: move the pointer"});
    const digit = el("canvas", {width: 168, height: 168, class: "vae-digit"});
    const caption = el("div", {class: "vae-caption"});
    const legend = el("div", {class: "vae-legend"}, TAB10.map(function (c, d) {
      return el("span", {style: "color:" + c, text: "\u25cf " + d});
    }));
    root.appendChild(el("div", {class: "vae-row"}, [
      el("div", {}, [plane, legend]), el("div", {}, [digit, caption])]));
    const ctx = plane.getContext("2d");
    function toPixel(v) { return (v + lim) / (2 * lim) * size; }
    function drawPlane(z) {
      ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, size, size);
      ctx.strokeStyle = "#ccc"; ctx.beginPath();
      ctx.moveTo(toPixel(0), 0); ctx.lineTo(toPixel(0), size);
      ctx.moveTo(0, size - toPixel(0)); ctx.lineTo(size, size - toPixel(0)); ctx.stroke();
      for (let i = 0; i < labels.length; i++) {
        ctx.fillStyle = TAB10[labels[i] % 10];
        ctx.fillRect(toPixel(codes[2 * i]) - 1, size - toPixel(codes[2 * i + 1]) - 1, 2.5, 2.5);
      }
      ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.beginPath();
      ctx.arc(toPixel(z[0]), size - toPixel(z[1]), 6, 0, 2 * Math.PI); ctx.stroke();
      ctx.lineWidth = 1;
    }
    function show(z) { drawPlane(z); timedDecode(root, decoder, z, digit, caption); }
    function fromEvent(ev) {
      const r = plane.getBoundingClientRect();
      const x = (ev.clientX - r.left) / r.width, y = (ev.clientY - r.top) / r.height;
      return [(2 * x - 1) * lim, (1 - 2 * y) * lim];
    }
    plane.addEventListener("pointermove", function (ev) { show(fromEvent(ev)); });
    plane.addEventListener("pointerdown", function (ev) { show(fromEvent(ev)); });
    show(s.start || [0, 0]);
  };

  // Sliders along a few directions of a K-D code: z = centre + sum_i a_i * scale_i * dir_i.
  EXPLORERS["latent-sliders"] = function (root, s, assets) {
    const decoder = makeDecoder(assets[s.asset]);
    const centre = f32(s.centre), dirs = f32(s.directions), K = decoder.latentDim;
    const a = new Float64Array(s.scales.length);
    const digit = el("canvas", {width: 168, height: 168, class: "vae-digit"});
    const caption = el("div", {class: "vae-caption"});
    function code() {
      const z = Float64Array.from(centre);
      for (let i = 0; i < a.length; i++)
        for (let k = 0; k < K; k++) z[k] += a[i] * s.scales[i] * dirs[i * K + k];
      return z;
    }
    function show() {
      timedDecode(root, decoder, code(), digit, null);
      caption.textContent = s.names.map(function (n, i) {
        return n + " = " + (a[i] >= 0 ? "+" : "") + a[i].toFixed(2); }).join(", ");
    }
    const rows = s.names.map(function (name, i) {
      return slider(name, -s.range, s.range, 0.05, 0, function (v) { a[i] = v; show(); }).row;
    });
    root.appendChild(el("div", {class: "vae-row"}, [
      el("div", {class: "vae-controls"}, rows), el("div", {}, [digit, caption])]));
    show();
  };

  // Interpolation: z = (1 - t) z_a + t z_b between two chosen digits' codes.
  EXPLORERS["interpolation"] = function (root, s, assets) {
    const decoder = makeDecoder(assets[s.asset]);
    const codes = f32(s.codes), K = decoder.latentDim;
    let ia = s.start[0], ib = s.start[1], t = 0;
    const digit = el("canvas", {width: 168, height: 168, class: "vae-digit"});
    const caption = el("div", {class: "vae-caption"});
    function choice(label, value, set) {
      const sel = el("select", {"aria-label": label}, s.names.map(function (n, i) {
        return el("option", {value: i, text: n}); }));
      sel.value = value;
      sel.addEventListener("change", function () { set(Number(sel.value)); show(); });
      return el("label", {class: "vae-slider"}, [el("span", {text: label}), sel]);
    }
    function show() {
      const z = new Float64Array(K);
      for (let k = 0; k < K; k++) z[k] = (1 - t) * codes[ia * K + k] + t * codes[ib * K + k];
      timedDecode(root, decoder, z, digit, null);
      caption.textContent = "t = " + t.toFixed(2) + " from " + s.names[ia] + " to " + s.names[ib];
    }
    const tSlider = slider("t", 0, 1, 0.01, 0, function (v) { t = v; show(); });
    root.appendChild(el("div", {class: "vae-row"}, [
      el("div", {class: "vae-controls"}, [
        choice("from", ia, function (v) { ia = v; }), choice("to", ib, function (v) { ib = v; }),
        tSlider.row]),
      el("div", {}, [digit, caption])]));
    show();
  };

  // KL(N(mu, sigma^2) || N(0, 1)) = (mu^2 + sigma^2 - 1 - log sigma^2) / 2, drawn.
  function klTerms(mu, sigma) {
    return {mean: 0.5 * mu * mu, spread: 0.5 * (sigma * sigma - 1 - Math.log(sigma * sigma))};
  }
  function normalPdf(x, mu, sigma) {
    const u = (x - mu) / sigma;
    return Math.exp(-0.5 * u * u) / (sigma * Math.sqrt(2 * Math.PI));
  }
  function drawCurves(canvas, curves, xlim, ymax) {
    const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
    ctx.strokeStyle = "#999"; ctx.beginPath(); ctx.moveTo(0, h - 20); ctx.lineTo(w, h - 20);
    ctx.stroke();
    ctx.fillStyle = "#555"; ctx.font = "11px sans-serif";
    for (let x = Math.floor(xlim[0]) + 1; x < xlim[1]; x++) {   // inner ticks: none clipped
      const px = (x - xlim[0]) / (xlim[1] - xlim[0]) * w;
      ctx.fillText(String(x), px - 3, h - 6);
    }
    for (const c of curves) {
      ctx.strokeStyle = c.color; ctx.lineWidth = 2; ctx.setLineDash(c.dash || []);
      ctx.beginPath();
      for (let i = 0; i <= 300; i++) {
        const x = xlim[0] + (xlim[1] - xlim[0]) * i / 300;
        const y = h - 20 - Math.min(c.f(x) / ymax, 1.05) * (h - 30);
        if (i === 0) ctx.moveTo(i / 300 * w, y); else ctx.lineTo(i / 300 * w, y);
      }
      ctx.stroke();
    }
    ctx.setLineDash([]); ctx.lineWidth = 1;
  }

  EXPLORERS["kl"] = function (root, s) {
    let mu = s.mu, sigma = s.sigma;
    const canvas = el("canvas", {width: 520, height: 220, class: "vae-curves"});
    const readout = el("div", {class: "vae-caption"});
    function show() {
      const kl = klTerms(mu, sigma);
      const peak = Math.max(1 / sigma, 1) / Math.sqrt(2 * Math.PI);   // the taller density
      drawCurves(canvas, [
        {f: function (x) { return normalPdf(x, mu, sigma); }, color: TAB10[0]},
        {f: function (x) { return normalPdf(x, 0, 1); }, color: "#444", dash: [6, 4]}],
        [-5, 5], 1.15 * peak);
      const total = kl.mean + kl.spread;
      readout.textContent = "KL(q || p) = " + total.toFixed(4) + " nats = mean term " +
        kl.mean.toFixed(4) + " + spread term " + kl.spread.toFixed(4) +
        "   (q solid, prior N(0, 1) dashed)";
      root.vaeState = {mu: mu, sigma: sigma, kl: total};
      root.dispatchEvent(new CustomEvent("vae-redraw"));
    }
    const rows = [slider("\u03bc", -3, 3, 0.05, mu, function (v) { mu = v; show(); }).row,
                  slider("\u03c3", 0.05, 3, 0.05, sigma, function (v) { sigma = v; show(); }).row];
    root.appendChild(el("div", {}, [el("div", {class: "vae-controls"}, rows), canvas, readout]));
    show();
  };

  // The reparameterization: fixed draws eps ~ N(0, 1) become z = mu + sigma * eps.
  EXPLORERS["reparam"] = function (root, s) {
    const eps = f32(s.eps);
    let mu = s.mu, sigma = s.sigma;
    const canvas = el("canvas", {width: 520, height: 240, class: "vae-curves"});
    const readout = el("div", {class: "vae-caption"});
    function show() {
      const z = new Float64Array(eps.length);
      let mean = 0;
      for (let i = 0; i < eps.length; i++) { z[i] = mu + sigma * eps[i]; mean += z[i]; }
      mean /= eps.length;
      let sq = 0;
      for (let i = 0; i < z.length; i++) sq += (z[i] - mean) * (z[i] - mean);
      const sd = Math.sqrt(sq / (z.length - 1));
      const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
      // the axis holds mu +- 4 sigma; the bins are narrow enough to follow a narrow density
      const xlim = [Math.min(-6, mu - 4 * sigma), Math.max(6, mu + 4 * sigma)];
      const bins = Math.round(Math.min(w / 2, Math.max(60, (xlim[1] - xlim[0]) / (sigma / 4))));
      const counts = new Float64Array(bins);
      for (const v of z) {
        const b = Math.floor((v - xlim[0]) / (xlim[1] - xlim[0]) * bins);
        if (b >= 0 && b < bins) counts[b]++;
      }
      const scale = bins / (z.length * (xlim[1] - xlim[0]));   // counts -> density
      const ymax = 1.15 / (sigma * Math.sqrt(2 * Math.PI));   // the density's peak fits
      drawCurves(canvas, [{f: function (x) { return normalPdf(x, mu, sigma); },
                           color: TAB10[3]}], xlim, ymax);
      ctx.fillStyle = "rgba(31, 119, 180, 0.45)";
      for (let b = 0; b < bins; b++) {
        const hgt = Math.min(counts[b] * scale / ymax, 1.05) * (h - 30);
        const bw = w / bins;                      // a pixel of gap only where bars are wide
        ctx.fillRect(b * bw, h - 20 - hgt, bw > 4 ? bw - 1 : bw, hgt);
      }
      ctx.fillStyle = "#000";
      for (let i = 0; i < Math.min(40, z.length); i++) {     // the first draws, as ticks
        const px = (z[i] - xlim[0]) / (xlim[1] - xlim[0]) * w;
        ctx.fillRect(px, h - 24, 1.5, 8);
      }
      readout.textContent = z.length + " draws: mean " + mean.toFixed(3) + ", std " +
        sd.toFixed(3) + "; z = " + mu.toFixed(2) + " + " + sigma.toFixed(2) +
        " \u00d7 eps for the same eps (histogram), N(\u03bc, \u03c3\u00b2) in red";
      root.vaeState = {mu: mu, sigma: sigma, z: z, mean: mean, std: sd};
      root.dispatchEvent(new CustomEvent("vae-redraw"));
    }
    const rows = [slider("\u03bc", -3, 3, 0.05, mu, function (v) { mu = v; show(); }).row,
                  slider("\u03c3", 0.05, 2, 0.05, sigma, function (v) { sigma = v; show(); }).row];
    root.appendChild(el("div", {}, [el("div", {class: "vae-controls"}, rows), canvas, readout]));
    show();
  };

  // Precomputed frames on a grid of factors (the handwriting cards of chapter 1).
  EXPLORERS["frames"] = function (root, s, assets) {
    const a = assets[s.asset], frames = f32(a.frames), grid = a.grid, names = a.names;
    const shape = a.image_shape, size = shape[0] * shape[1];
    const index = names.map(function () { return 0; });
    const digit = el("canvas", {width: 4 * shape[1], height: 4 * shape[0], class: "vae-digit"});
    const caption = el("div", {class: "vae-caption"});
    function label(n) { return n.replace(/_/g, " "); }
    const whole = grid.map(function (g) { return g.every(Number.isInteger); });  // e.g. hands
    function shown(v, i) { return whole[i] ? String(v) : v.toFixed(2); }
    function show() {
      let flat = 0;
      for (let i = 0; i < names.length; i++) flat = flat * grid[i].length + index[i];
      const image = frames.subarray(flat * size, (flat + 1) * size);
      paintImage(digit, image, shape);
      caption.textContent = names.map(function (n, i) {
        return label(n) + " " + shown(grid[i][index[i]], i); }).join(", ");
      root.vaeState = {index: index.slice(), values: names.map(function (n, i) {
        return grid[i][index[i]]; }), image: image};
      root.dispatchEvent(new CustomEvent("vae-redraw"));
    }
    const rows = names.map(function (name, i) {
      index[i] = a.start[i];
      const input = el("input", {type: "range", min: 0, max: grid[i].length - 1, step: 1,
                                 value: index[i], "aria-label": name});
      const readout = el("span", {class: "vae-readout"});
      function update() { readout.textContent = shown(grid[i][index[i]], i); }
      input.addEventListener("input", function () { index[i] = Number(input.value); update(); show(); });
      update();
      return el("label", {class: "vae-slider"}, [el("span", {text: label(name)}), input, readout]);
    });
    root.appendChild(el("div", {class: "vae-row"}, [
      el("div", {class: "vae-controls"}, rows), el("div", {}, [digit, caption])]));
    show();
  };

  function buildExplorer(root) {
    const kind = root.dataset.kind, build = EXPLORERS[kind];
    const s = JSON.parse(root.dataset.settings || "{}");
    const names = s.assets || (s.asset ? [s.asset] : []);
    root.classList.add("vae-loading");
    return Promise.all(names.map(loadAsset)).then(function (loaded) {
      if (!build) throw new Error("no explorer of kind " + kind);
      const assets = {};
      names.forEach(function (n, i) { assets[n] = loaded[i]; });
      root.textContent = "";
      build(root, s, assets);
      root.classList.remove("vae-loading");
      root.classList.add("vae-ready");
    });
  }

  // -- answer boxes: vae_numpy.exercises.NumberCheck.judge, in the page ---------------
  function roundSignificant(x, digits) {
    if (x === 0 || !isFinite(x)) return x;
    return roundTo(x, digits - 1 - Math.floor(Math.log10(Math.abs(x))));
  }
  function roundTo(x, decimals) {  // Python's round(x, n), to the nearest (ties aside)
    if (decimals >= 0) return Number(x.toFixed(Math.min(100, decimals)));
    const f = Math.pow(10, -decimals);
    return Math.round(x / f) * f;
  }
  function isClose(a, b, rel, abs) {
    return Math.abs(a - b) <= Math.max(rel * Math.max(Math.abs(a), Math.abs(b)), abs);
  }
  // [significant digits, half a unit of the last digit] as NumberCheck's _shown reads
  // Python's repr of the number; from the typed text when it is a plain decimal, so that
  // zeros the reader typed at the end (1.60) count, which a float cannot keep.
  function shownOf(value, text) {
    // (a whole number's trailing zeros do not count: 5700000 is two digits, a rounding;
    // zero shows no digit, so it is never a rounding of another answer)
    if (value === 0) return [0, 0];
    const m = /^[+-]?(\d*)\.(\d*)$/.exec(text);
    if (m) {
      const frac = m[2], all = (m[1] + frac).replace(/^0+/, "");
      return [Math.max(1, all.length), 0.5 * Math.pow(10, -frac.length)];
    }
    const v = Math.abs(value);
    const [mantissa, exp] = v.toExponential().split("e");
    const digits = mantissa.replace(".", "").replace(/0+$/, "");
    return [digits.length, 0.5 * Math.pow(10, Number(exp) - (digits.length - 1))];
  }
  function parseAnswer(text) {
    const t = String(text).trim().replace(/\u2212/g, "-");
    if (t === "") return {value: null, why: "Not answered yet: type a number."};
    // what Python prints for a number that is not finite: NumberCheck's own message
    if (/^[+-]?(inf|infinity|nan)$/i.test(t)) {
      const shown = /nan/i.test(t) ? "nan" : (t[0] === "-" ? "-inf" : "inf");
      return {value: null, why: "Got " + shown + ": the computation overflowed, took the " +
                                "log of 0 (an exp that underflowed) or divided by zero " +
                                "somewhere."};
    }
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t))
      return {value: null, why: "Expected one number (digits, a point, an optional exponent " +
                                "such as 1.5e-3); got \u201c" + t + "\u201d."};
    const v = Number(t);
    if (!isFinite(v)) return {value: null, why: "Got " + v + ": that number is too large."};
    return {value: v, text: t.replace(/^\+/, ""), why: ""};
  }
  // vae_numpy.exercises.NumberCheck.judge, rule for rule
  function judge(check, text) {
    const a = parseAnswer(text);
    if (a.value === null) return {right: false, message: a.why};
    const value = a.value, want = check.want;
    const right = {right: true, message: ["Right.", check.success].filter(Boolean).join(" ")};
    const within = Math.max(check.atol, check.rtol * Math.abs(want));
    const [shown, half] = shownOf(value, a.text);
    const digits = check.digits === undefined ? null : check.digits;
    if (digits === null) {
      if (Math.abs(value - want) <= within) return right;
    } else {
      if (shown >= digits && Math.abs(value - want) <= Math.max(within, half * (1 + 1e-9)))
        return right;
      if (shown < digits && isClose(value, roundSignificant(want, digits), 1e-12, 1e-15))
        return right;
    }
    // a right rounding with too few digits is not a mistake: more digits before any hint
    const exactMistake = check.hints.some(function (h) { return isClose(value, h[0], 1e-9, 1e-12); });
    if (digits !== null && shown < digits && !exactMistake &&
        Math.abs(value - want) <= half * (1 + 1e-9))
      return {right: false, message: "Close: right method, but give more digits (at least " +
                                     digits + " significant)."};
    let best = null;
    for (const [wrong, message] of check.hints) {
      const d = Math.abs(value - wrong);
      if ((d <= check.hint_rtol * Math.abs(wrong) || value === wrong) && (!best || d < best.d))
        best = {d: d, message: message};
    }
    if (best) return {right: false, message: "Not quite. " + best.message};
    if (Math.abs(value - want) <= check.close_rtol * Math.abs(want)) {
      // fewer digits than asked: the right method only if they are the answer rounded
      const roundedRight = Math.abs(value - want) <= half * (1 + 1e-9);
      if (digits !== null && shown < digits && roundedRight)
        return {right: false, message: "Close: right method, but give more digits (at least " +
                                       digits + " significant)."};
      if (digits === null && roundedRight)
        return {right: false, message: "Close: right method, but give more digits."};
      return {right: false, message: "Close, but not right: check the last step and the rounding."};
    }
    return {right: false, message: "Not quite. " + check.fallback};
  }

  function buildAnswer(root) {
    const check = JSON.parse(root.dataset.check);
    const input = el("input", {type: "text", inputmode: "decimal", class: "vae-answer-input",
                               "aria-label": root.dataset.label || "your answer"});
    const button = el("button", {type: "button", text: "Check"});
    const verdict = el("p", {class: "vae-verdict", "aria-live": "polite"});
    function run() {
      const r = judge(check, input.value);
      verdict.textContent = r.message;
      verdict.className = "vae-verdict " + (r.right ? "vae-right" : "vae-wrong");
      root.vaeState = r;
    }
    button.addEventListener("click", run);
    input.addEventListener("keydown", function (ev) { if (ev.key === "Enter") run(); });
    root.textContent = "";
    root.appendChild(el("div", {class: "vae-answer-row"}, [
      el("span", {text: root.dataset.label || "Your answer"}), input, button]));
    root.appendChild(verdict);
    root.classList.add("vae-ready");
  }

  function start() {
    const jobs = [];
    for (const root of document.querySelectorAll("div.vae-explorer")) {
      jobs.push(buildExplorer(root).catch(function (err) {
        root.classList.add("vae-failed");
        root.textContent = "This explorer could not start: " + err.message;
        console.error("vae-book:", err);
      }));
    }
    for (const root of document.querySelectorAll("div.vae-answer")) buildAnswer(root);
    window.VAE_BOOK.ready = Promise.all(jobs);
  }

  window.VAE_BOOK = {judge: judge, makeDecoder: makeDecoder, loadAsset: loadAsset, f32: f32,
                     klTerms: klTerms, ready: null};
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
