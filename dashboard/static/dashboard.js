// edgebridge dashboard: the live stream and the fleet table's sorting and filtering. No library:
// the server renders every block (HTML and SVG); this file only swaps them in and orders rows.
(function () {
  "use strict";
  var main = document.querySelector("main[data-stream]");
  var conn = document.getElementById("conn");
  var sort = { col: null, dir: 1 };

  function text(cell) {
    return cell ? (cell.getAttribute("data-sort") || cell.textContent || "") : "";
  }

  function arrange() {
    var table = document.getElementById("fleet");
    if (!table) return;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var filter = document.getElementById("filter");
    var words = filter ? filter.value.toLowerCase().split(/\s+/).filter(Boolean) : [];
    var shown = 0;
    rows.forEach(function (row) {
      var hay = row.textContent.toLowerCase();
      var keep = words.every(function (w) { return hay.indexOf(w) >= 0; });
      row.hidden = !keep;
      if (keep) shown += 1;
    });
    var count = document.getElementById("count");
    if (count && words.length) count.textContent = shown + " of " + rows.length;
    if (sort.col !== null) {
      rows.sort(function (a, b) {
        var x = text(a.cells[sort.col]), y = text(b.cells[sort.col]);
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return c * sort.dir;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    }
    table.querySelectorAll("th").forEach(function (th) {
      var col = parseInt(th.getAttribute("data-col"), 10);
      th.className = col === sort.col ? (sort.dir > 0 ? "asc" : "desc") : "";
    });
  }

  document.addEventListener("click", function (event) {
    var th = event.target.closest ? event.target.closest("#fleet th[data-col]") : null;
    if (!th) return;
    var col = parseInt(th.getAttribute("data-col"), 10);
    sort.dir = sort.col === col ? -sort.dir : 1;
    sort.col = col;
    arrange();
  });
  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "filter") arrange();
  });

  if (!main || !window.EventSource) return;
  var live = document.getElementById("live");
  var stream = new EventSource(main.getAttribute("data-stream"));
  var updates = 0;
  stream.addEventListener("open", function () { conn.textContent = "live"; conn.className = "conn up"; });
  stream.addEventListener("error", function () { conn.textContent = "reconnecting…"; conn.className = "conn down"; });
  stream.addEventListener("update", function (event) {
    var message = JSON.parse(event.data);
    updates += 1;
    live.innerHTML = message.html;
    document.body.setAttribute("data-updates", String(updates));
    arrange();
  });
})();
