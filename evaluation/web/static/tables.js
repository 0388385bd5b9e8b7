// headmaps: sortable tables. Any <table class="sortable"> sorts by a column when its header is
// clicked (or focused and Enter/Space pressed); a cell's data-value, else its text, is the key,
// numbers compared as numbers. The first click on a numeric column sorts high to low.
(function () {
  "use strict";

  function key(cell) {
    if (!cell) return "";
    var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
    var num = parseFloat(raw);
    return raw !== "" && isFinite(num) && /^[-+]?[\d.]/.test(raw) ? num : raw.toLowerCase();
  }

  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    if (!body) return;
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = rows.some(function (r) { return typeof key(r.cells[index]) === "number"; });
    var current = th.getAttribute("aria-sort");
    var descending = current ? current === "ascending" : numeric;
    rows.sort(function (a, b) {
      var x = key(a.cells[index]), y = key(b.cells[index]);
      var xn = typeof x === "number", yn = typeof y === "number";
      var order;
      if (xn && yn) order = x - y;
      else if (xn !== yn) return xn ? -1 : 1;  // empty or text cells last either way
      else order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    table.querySelectorAll("th[aria-sort]").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  function setup(table) {
    var head = table.tHead;
    if (!head || !head.rows.length) return;
    Array.prototype.forEach.call(head.rows[0].cells, function (th, index) {
      if (th.classList.contains("nosort")) return;
      th.tabIndex = 0;
      th.classList.add("sort-key");
      th.title = th.title || "sort by this column";
      th.addEventListener("click", function () { sortBy(table, index, th); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(table, index, th); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable").forEach(setup);
  });
})();
