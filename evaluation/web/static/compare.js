// headmaps: compare heads. Tick the .pick checkboxes (the heatmap's top-heads table, a head's
// page) or shift-click heatmap cells, and press a .compare-selected button: the selected heads
// of one model open side by side. The selection is kept per model in sessionStorage, so heads
// picked on several pages add up.
(function () {
  "use strict";
  function key(model) { return "headmaps.compare." + model; }
  function load(model) { try { return JSON.parse(sessionStorage.getItem(key(model)) || "[]"); } catch (e) { return []; } }
  function save(model, heads) { try { sessionStorage.setItem(key(model), JSON.stringify(heads)); } catch (e) { /* private mode */ } }

  document.addEventListener("DOMContentLoaded", function () {
    var picks = document.querySelectorAll("input.pick[data-model][data-head]");
    picks.forEach(function (box) {
      var model = box.dataset.model;
      box.checked = load(model).indexOf(box.dataset.head) >= 0;
      box.addEventListener("change", function () {
        var heads = load(model).filter(function (h) { return h !== box.dataset.head; });
        if (box.checked) heads.push(box.dataset.head);
        save(model, heads);
      });
    });
    var wrap = document.querySelector(".heatmap-wrap[data-model]");
    function markCells() {
      if (!wrap) return;
      var heads = load(wrap.dataset.model);
      wrap.querySelectorAll("a.cell[data-head]").forEach(function (cell) {
        cell.classList.toggle("picked", heads.indexOf(cell.getAttribute("data-head")) >= 0);
      });
      var count = document.getElementById("picked-count");
      if (count) count.textContent = heads.length ? heads.length + " selected" : "";
    }
    if (wrap) {
      markCells();
      wrap.addEventListener("click", function (event) {
        var cell = event.target.closest ? event.target.closest("a.cell[data-head]") : null;
        if (!cell || !event.shiftKey) return;
        event.preventDefault();  // shift-click selects; a plain click opens the head
        var model = wrap.dataset.model, head = cell.getAttribute("data-head");
        var heads = load(model);
        var at = heads.indexOf(head);
        if (at >= 0) heads.splice(at, 1); else heads.push(head);
        save(model, heads);
        document.querySelectorAll('input.pick[data-head="' + head + '"]').forEach(function (box) { box.checked = at < 0; });
        markCells();
      });
      picks.forEach(function (box) { box.addEventListener("change", markCells); });
    }
    document.querySelectorAll("button.compare-selected").forEach(function (button) {
      button.addEventListener("click", function () {
        var first = document.querySelector("input.pick[data-model]") || wrap;
        if (!first) return;
        var model = first.dataset.model, heads = load(model);
        if (heads.length < 2) { button.textContent = "Tick two or more heads"; return; }
        location.href = "/compare?model=" + encodeURIComponent(model) + "&heads=" + encodeURIComponent(heads.slice(0, 8).join(","));
      });
    });
  });
})();
