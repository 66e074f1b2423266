// edgebridge dashboard: the live stream and the fleet table's sorting and filtering. No library:
// the server renders every block and row (HTML and SVG); this file only swaps them in, orders rows,
// and counts "5s ago" from each row's time (so that a row changes only when its device does).
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
    // no column chosen: the server's order (by device id), which a row added by an update keeps
    var order = sort.col === null ? function (a, b) {
      var x = a.getAttribute("data-device"), y = b.getAttribute("data-device");
      return x < y ? -1 : (x > y ? 1 : 0);
    } : function (a, b) {
      var x = text(a.cells[sort.col]), y = text(b.cells[sort.col]);
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return c * sort.dir;
    };
    var sorted = rows.slice().sort(order);
    if (sorted.some(function (row, i) { return row !== rows[i]; })) {
      sorted.forEach(function (row) { body.appendChild(row); });
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

  function ago() {
    var now = Date.now() / 1000;
    document.querySelectorAll("td.ago[data-t]").forEach(function (td) {
      var s = Math.max(0, Math.floor(now - parseFloat(td.getAttribute("data-t"))));
      td.textContent = s < 120 ? s + "s ago" : (s < 7200 ? Math.floor(s / 60) + "m ago" : Math.floor(s / 3600) + "h ago");
    });
  }
  ago();
  setInterval(ago, 1000);

  // one <tr> (or <td>) of the server's HTML as a node: a template parses table parts out of a table
  function node(html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    return t.content.firstElementChild;
  }

  // an update of the fleet table: only the rows that changed. A row comes with an empty sparklines
  // cell unless its sparklines changed too (they change once a minute): the row keeps the one it has.
  function patch(message) {
    var table = document.getElementById("fleet");
    var summary = document.getElementById("summary");
    if (!table || !summary) return;
    var body = table.tBodies[0];
    var have = {};
    Array.prototype.forEach.call(body.rows, function (row) { have[row.getAttribute("data-device")] = row; });
    var listed = {};
    message.rows.forEach(function (p) {
      listed[p.d] = true;
      var row = have[p.d];
      if (p.row) {
        var fresh = node(p.row);
        var oldSpark = row ? row.querySelector("td.sparks") : null;
        if (oldSpark && !p.spark) fresh.querySelector("td.sparks").replaceWith(oldSpark);
        if (row) row.replaceWith(fresh); else body.appendChild(fresh);
        row = have[p.d] = fresh;
      }
      if (p.spark && row) row.querySelector("td.sparks").replaceWith(node(p.spark));
    });
    var drop = (message.gone || []).slice();
    if (message.full) {
      Object.keys(have).forEach(function (d) { if (!listed[d]) drop.push(d); });
    }
    drop.forEach(function (d) { if (have[d]) have[d].remove(); });
    summary.innerHTML = message.summary;
    ago();
  }

  if (!main || !window.EventSource) return;
  var live = document.getElementById("live");
  var stream = new EventSource(main.getAttribute("data-stream"));
  var updates = 0;
  stream.addEventListener("open", function () { conn.textContent = "live"; conn.className = "conn up"; });
  stream.addEventListener("error", function () { conn.textContent = "reconnecting…"; conn.className = "conn down"; });
  stream.addEventListener("update", function (event) {
    var message = JSON.parse(event.data);
    updates += 1;
    if (message.html !== undefined) live.innerHTML = message.html; else patch(message);
    document.body.setAttribute("data-updates", String(updates));
    arrange();
  });
})();
