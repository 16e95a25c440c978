// Answer browser. Model text is untrusted: it only ever reaches the page through textContent, never innerHTML.
"use strict";
(function () {
  const blob = JSON.parse(document.getElementById("answers-data").textContent);
  const cols = blob.columns;
  const C = {};
  cols.forEach(function (name, i) { C[name] = i; });
  const rows = blob.rows;
  const PAGE = 50;
  const $ = function (id) { return document.getElementById(id); };
  const filters = [["f-condition", "condition"], ["f-question", "question_id"], ["f-variant", "variant"],
                   ["f-trigger", "trigger"], ["f-format", "prompt_format"]];
  let page = 0;

  function fill(selectId, col) {
    const select = $(selectId);
    const values = Array.from(new Set(rows.map(function (r) { return r[C[col]]; }))).sort();
    values.forEach(function (v) {
      const opt = document.createElement("option");
      opt.value = v;
      opt.textContent = v === "" ? "(none)" : v;
      select.appendChild(opt);
    });
    if (values.length < 2) { select.parentElement.classList.add("hidden"); }
  }

  function num(v) { return v === null ? NaN : v; }

  const sorters = {
    misaligned_first: function (a, b) {
      // misaligned coherent answers first, lowest aligned first; unscored last
      const ma = a[C.misaligned] === 1 ? 0 : (a[C.misaligned] === 0 ? 1 : 2);
      const mb = b[C.misaligned] === 1 ? 0 : (b[C.misaligned] === 0 ? 1 : 2);
      if (ma !== mb) { return ma - mb; }
      return cmp(num(a[C.aligned]), num(b[C.aligned])) || cmp(-num(a[C.coherent]), -num(b[C.coherent]));
    },
    aligned_asc: function (a, b) { return cmp(num(a[C.aligned]), num(b[C.aligned])); },
    aligned_desc: function (a, b) { return cmp(-num(a[C.aligned]), -num(b[C.aligned])); },
    coherent_asc: function (a, b) { return cmp(num(a[C.coherent]), num(b[C.coherent])); },
    coherent_desc: function (a, b) { return cmp(-num(a[C.coherent]), -num(b[C.coherent])); },
  };
  function cmp(x, y) {  // NaN (unscored) sorts last
    if (isNaN(x) && isNaN(y)) { return 0; }
    if (isNaN(x)) { return 1; }
    if (isNaN(y)) { return -1; }
    return x - y;
  }

  function selected() {
    const want = filters.map(function (f) { return [C[f[1]], $(f[0]).value]; });
    const needle = $("f-search").value.trim().toLowerCase();
    const onlyMis = $("f-misaligned").checked;
    const out = rows.filter(function (r) {
      for (let i = 0; i < want.length; i++) {
        if (want[i][1] !== "__all__" && r[want[i][0]] !== want[i][1]) { return false; }
      }
      if (onlyMis && r[C.misaligned] !== 1) { return false; }
      if (needle && (r[C.answer] + "\n" + r[C.question]).toLowerCase().indexOf(needle) < 0) { return false; }
      return true;
    });
    out.sort(sorters[$("f-sort").value]);
    return out;
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }
  function score(v) { return v === null ? "" : v.toFixed(1); }

  function render() {
    const hits = selected();
    const pages = Math.max(1, Math.ceil(hits.length / PAGE));
    page = Math.min(page, pages - 1);
    const body = $("answers-body");
    body.replaceChildren();
    hits.slice(page * PAGE, (page + 1) * PAGE).forEach(function (r) {
      const tr = document.createElement("tr");
      tr.className = "answer-row" + (r[C.misaligned] === 1 ? " mis" : "");
      cell(tr, r[C.condition]);
      cell(tr, r[C.model] + (r[C.seed] === "" ? "" : " / seed " + r[C.seed]), "small");
      cell(tr, r[C.question_id] + " \u00b7 " + r[C.variant] + (r[C.trigger] ? " \u00b7 trigger" : "") +
           (r[C.prompt_format] !== "plain" ? " \u00b7 " + r[C.prompt_format] : ""), "small");
      cell(tr, score(r[C.aligned]), "num");
      cell(tr, score(r[C.coherent]), "num");
      cell(tr, r[C.status], "small");
      const td = cell(tr, "", "text");
      const q = document.createElement("div");
      q.className = "q";
      q.textContent = r[C.question];
      const a = document.createElement("div");
      a.className = "a";
      a.textContent = r[C.answer];
      td.appendChild(q);
      td.appendChild(a);
      body.appendChild(tr);
    });
    $("match-count").textContent = hits.length + " of " + rows.length + " answers";
    $("page-info").textContent = "page " + (page + 1) + " of " + pages;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
  }

  function reset() { page = 0; render(); }
  filters.forEach(function (f) { fill(f[0], f[1]); $(f[0]).addEventListener("change", reset); });
  $("f-sort").addEventListener("change", reset);
  $("f-misaligned").addEventListener("change", reset);
  $("f-search").addEventListener("input", reset);
  $("prev").addEventListener("click", function () { page = Math.max(0, page - 1); render(); });
  $("next").addEventListener("click", function () { page += 1; render(); });
  $("dismiss-warning").addEventListener("click", function () { $("content-warning").classList.add("hidden"); });
  render();
})();
