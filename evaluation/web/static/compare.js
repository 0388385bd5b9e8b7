// headmaps: compare heads. Tick the .pick checkboxes (the heatmap's top-heads table, a head's
// page) and press a .compare-selected button: the ticked heads of one model open side by side.
// The selection is kept per model in sessionStorage, so heads picked on several pages add up.
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
    document.querySelectorAll("button.compare-selected").forEach(function (button) {
      button.addEventListener("click", function () {
        var first = document.querySelector("input.pick[data-model]");
        if (!first) return;
        var model = first.dataset.model, heads = load(model);
        if (heads.length < 2) { button.textContent = "Tick two or more heads"; return; }
        location.href = "/compare?model=" + encodeURIComponent(model) + "&heads=" + encodeURIComponent(heads.slice(0, 8).join(","));
      });
    });
  });
})();
