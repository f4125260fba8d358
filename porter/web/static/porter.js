// Porter's pages work without this file; it adds live updates over server-sent events.
// No inline script anywhere: the Content-Security-Policy allows only this file. HTML arriving
// over a stream was rendered and escaped by the server from the page's own templates; log text
// is only ever set as text.
"use strict";

(function () {
  function listen(url, handlers) {
    var source = new EventSource(url);
    var status = document.getElementById("live-status");
    Object.keys(handlers).forEach(function (name) {
      source.addEventListener(name, function (e) { handlers[name](JSON.parse(e.data)); });
    });
    source.addEventListener("reload", function () { window.location.reload(); });
    source.onopen = function () { if (status) status.dataset.state = "open"; };
    source.onerror = function () { if (status) status.dataset.state = "closed"; };
    return source;
  }

  function parseRow(html) {
    var holder = document.createElement("tbody");
    holder.innerHTML = html;
    return holder.firstElementChild;
  }

  // New rows go in id order (newest first); a change to a row replaces it where it is.
  function followFeed(table) {
    var body = table.tBodies[0];
    var limit = Number(table.dataset.limit) || 50;
    listen(table.dataset.live, {
      task: function (data) {
        var row = parseRow(data.html);
        tickAges(row);
        var old = document.getElementById("task-" + data.id);
        if (old) { old.replaceWith(row); return; }
        var before = null;
        for (var i = 0; i < body.rows.length; i++) {
          if (Number(body.rows[i].dataset.id) < data.id) { before = body.rows[i]; break; }
        }
        if (!before && body.rows.length >= limit) return;  // older than the page shows
        body.insertBefore(row, before);
        while (body.rows.length > limit) body.deleteRow(-1);
        table.hidden = false;
        var empty = document.getElementById("feed-empty");
        if (empty) empty.hidden = true;
      }
    });
  }

  function followTask(head) {
    var log = document.getElementById("task-log");
    var timeline = document.getElementById("task-timeline");
    var empty = document.getElementById("log-empty");
    listen(head.dataset.live, {
      state: function (data) { head.innerHTML = data.head; timeline.innerHTML = data.timeline; },
      attempt: function () { log.textContent = ""; },
      log: function (data) {
        var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
        log.append(data.text);
        if (log.textContent.length > 400000) log.textContent = log.textContent.slice(-300000);
        if (atEnd) log.scrollTop = log.scrollHeight;
        if (empty) empty.hidden = true;
      }
    });
    log.scrollTop = log.scrollHeight;
  }

  // "5 s", "3 min", "2 h", "4 d", as the server's `age` filter writes them.
  function age(seconds) {
    var units = [[86400, "d"], [3600, "h"], [60, "min"]];
    for (var i = 0; i < units.length; i++) {
      if (seconds >= units[i][0]) return Math.floor(seconds / units[i][0]) + " " + units[i][1];
    }
    return Math.max(0, Math.floor(seconds)) + " s";
  }

  function tickAges(within) {
    var now = Date.now() / 1000;
    (within || document).querySelectorAll("time[data-at]").forEach(function (el) {
      el.textContent = age(now - Number(el.dataset.at));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var feed = document.getElementById("feed");
    if (feed && feed.dataset.live) followFeed(feed);
    var head = document.getElementById("task-head");
    if (head && head.dataset.live) followTask(head);
    if (document.querySelector("time[data-at]") || feed) setInterval(function () { tickAges(); }, 15000);
  });
})();
