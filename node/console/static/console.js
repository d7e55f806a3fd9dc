// scfchain console: the live block feed on the network page, fed by server-sent events
// (/events). New blocks appear at the top of the feed and the height card follows, without a
// reload; the browser's EventSource reconnects by itself (and the server replays what it missed).
"use strict";
(function () {
  const FEED_ROWS_MAX = 50;

  function cell(row, text, html) {
    const td = document.createElement("td");
    if (html) { td.appendChild(html); } else { td.textContent = text; }
    row.appendChild(td);
    return td;
  }

  function utc(ms) {
    return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function blockRow(b) {
    const row = document.createElement("tr");
    row.dataset.height = String(b.height);
    row.className = "fresh";
    const link = document.createElement("a");
    link.href = "/block/" + b.height;
    link.textContent = String(b.height);
    cell(row, "", link);
    cell(row, utc(b.time_ms)).className = "time";
    cell(row, b.proposer);
    cell(row, String(b.txs));
    cell(row, String(b.visible_txs));
    cell(row, String(b.failed_txs));
    cell(row, String(b.events));
    const hash = document.createElement("code");
    hash.title = b.block_hash;
    hash.textContent = b.block_hash.slice(0, 12) + "…";
    cell(row, "", hash);
    return row;
  }

  function follow(feed) {
    const body = feed.tBodies[0];
    const status = document.getElementById("live-status");
    const height = document.getElementById("chain-height");
    const source = new EventSource(feed.dataset.live);
    // A browser keeps at most six connections to one host: a page left behind must not hold
    // one with its stream, or the seventh page load waits. Reopened when the page comes back.
    window.addEventListener("pagehide", function () { source.close(); }, { once: true });
    window.addEventListener("pageshow", function (event) {
      if (event.persisted) { window.location.reload(); }
    }, { once: true });
    source.addEventListener("open", function () { if (status) { status.className = "live on"; } });
    source.addEventListener("error", function () { if (status) { status.className = "live off"; } });
    source.addEventListener("block", function (message) {
      const b = JSON.parse(message.data);
      if (body.querySelector('tr[data-height="' + b.height + '"]')) { return; }
      body.insertBefore(blockRow(b), body.firstChild);
      while (body.rows.length > FEED_ROWS_MAX) { body.deleteRow(body.rows.length - 1); }
      if (height && Number(height.textContent) < b.height) { height.textContent = String(b.height); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const feed = document.getElementById("block-feed");
    if (feed && window.EventSource) { follow(feed); }
  });
})();
