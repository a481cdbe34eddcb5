// Keeps a job's page current without reloading it: the server's event stream says when something changed,
// then the page fetches itself and swaps the sections whose content differs. Without JavaScript the page
// is complete as served (and refreshes itself every few seconds through a <noscript> meta tag).
(function () {
  "use strict";
  var root = document.getElementById("job");
  if (!root) return;
  var userOpen = {};  // <details> the reader opened or closed, kept across swaps
  document.addEventListener("toggle", function (e) {
    if (e.target.id) userOpen[e.target.id] = e.target.open;
  }, true);

  function swap(doc) {
    document.querySelectorAll("[data-live]").forEach(function (old) {
      var fresh = doc.getElementById(old.id);
      if (!fresh || fresh.innerHTML === old.dataset.served) return;
      old.innerHTML = fresh.innerHTML;
      old.dataset.served = fresh.innerHTML;
      old.querySelectorAll("details[id]").forEach(function (d) {
        if (d.id in userOpen) d.open = userOpen[d.id];
      });
    });
    var freshRoot = doc.getElementById("job");
    if (freshRoot) root.dataset.terminal = freshRoot.dataset.terminal;
    if (doc.title) document.title = doc.title;
    tick();
  }

  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (html) { swap(new DOMParser().parseFromString(html, "text/html")); })
      .catch(function () { /* the next change tries again */ })
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }

  function tick() {
    var el = document.querySelector("[data-elapsed]");
    if (!el || !el.dataset.started || el.dataset.finished) return;
    var s = Math.max(0, Math.floor((Date.now() - Date.parse(el.dataset.started)) / 1000));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    el.textContent = h ? h + "h " + pad(m) + "m" : m ? m + "m " + pad(sec) + "s" : sec + "s";
  }

  document.querySelectorAll("[data-live]").forEach(function (el) { el.dataset.served = el.innerHTML; });
  if (root.dataset.terminal === "true" || !window.EventSource) return;
  setInterval(tick, 1000);
  var source = new EventSource(root.dataset.stream);
  source.addEventListener("change", refresh);
  source.addEventListener("end", function () { source.close(); refresh(); });
})();
