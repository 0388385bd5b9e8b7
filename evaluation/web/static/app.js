// headmaps review app: remembered rater name, heatmap hover, review keyboard. No build step.
(function () {
  "use strict";
  var KEY = "headmaps.rater";

  function storedRater() { try { return localStorage.getItem(KEY) || ""; } catch (e) { return ""; } }
  function remember(name) { try { if (name) localStorage.setItem(KEY, name); } catch (e) { /* private mode */ } }

  function setupRater() {
    var shown = document.getElementById("rater");
    if (shown) remember(shown.textContent.trim());
    document.querySelectorAll("input.rater-name").forEach(function (input) {
      if (!input.value) input.value = storedRater();
      input.form.addEventListener("submit", function () { remember(input.value.trim()); });
    });
    // The review queue's name form: go straight on when this browser knows the rater.
    var form = document.getElementById("rater-form");
    var input = document.getElementById("rater-input");
    if (form && input && input.value && !/[?&]change=1/.test(location.search)) {
      form.submit();
    }
  }

  function setupHeatmap() {
    var grid = document.getElementById("heatmap");
    var info = document.getElementById("hover-info");
    if (!grid || !info) return;
    function show(event) {
      var cell = event.target.closest ? event.target.closest("a.cell") : null;
      if (cell) info.textContent = cell.getAttribute("aria-label");
    }
    grid.addEventListener("mouseover", show);
    grid.addEventListener("focusin", show);
    document.querySelectorAll(".controls select").forEach(function (select) {
      select.addEventListener("change", function () {
        var by = document.getElementById("colour-by");
        if (by && select.name === "operation") by.value = "operation";
        if (by && select.name === "pattern") by.value = "pattern";
        select.form.submit();
      });
    });
  }

  // The review queue keeps its scroll position from one item to the next: a rater who reads
  // the operation scores below the mappings finds the next head's scores in the same place.
  var SCROLL = "headmaps.review.scroll";
  function keepScroll() {
    var forms = ["review-form", "skip-form", "saved"].map(function (id) { return document.getElementById(id); });
    forms.forEach(function (f) {
      if (f) f.addEventListener("submit", function () {
        try { sessionStorage.setItem(SCROLL, String(window.scrollY)); } catch (e) { /* private mode */ }
      });
    });
    var y = null;
    try { y = sessionStorage.getItem(SCROLL); sessionStorage.removeItem(SCROLL); } catch (e) { /* private mode */ }
    if (y !== null && document.getElementById("review-form")) window.scrollTo(0, parseInt(y, 10) || 0);
  }

  function setupReview() {
    var form = document.getElementById("review-form");
    keepScroll();
    if (!form) return;
    var comment = document.getElementById("comment");
    var buttons = {};
    form.querySelectorAll("button[data-key]").forEach(function (b) { buttons[b.dataset.key] = b; });
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      var typing = event.target && (event.target.tagName === "TEXTAREA" || event.target.tagName === "INPUT");
      if (typing) {
        if (event.key === "Escape") event.target.blur();
        return;
      }
      if (buttons[event.key]) {
        event.preventDefault();
        buttons[event.key].click();
      } else if (event.key === "s") {
        event.preventDefault();
        document.getElementById("skip").click();
      } else if (event.key === "u" && document.getElementById("undo")) {
        event.preventDefault();
        document.getElementById("undo").click();
      } else if (event.key === "c") {
        event.preventDefault();
        comment.focus();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupRater();
    setupHeatmap();
    setupReview();
  });
})();
