// ferry's dashboard: the little script live updates need, no framework.
// - Pages whose <main> has data-live follow that event stream (GET /api/v1/events: deliveries,
//   deployments, steps; sent with
//   the session cookie) and, a moment after a burst of events, re-fetch the page and swap each
//   element marked data-refresh for its new version.
// - A <pre id="log" data-src=…> follows a deployment's log over Server-Sent Events: one line
//   per event, auto-scrolled while at the bottom; "end" closes the stream and says the state.
//   After a dropped connection the browser reconnects with Last-Event-ID by itself.
"use strict";

(function () {
  function debounce(fn, ms) {
    var timer = null;
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  function refresh() {
    fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (r.redirected && r.url.indexOf("/login") !== -1) { location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-refresh][id]").forEach(function (old) {
          var fresh = doc.getElementById(old.id);
          // Leave a part alone while the keyboard is in it: swapping would drop the focus.
          if (!fresh || old.contains(document.activeElement)) return;
          old.replaceWith(document.importNode(fresh, true));
        });
        document.dispatchEvent(new CustomEvent("ferry:refreshed"));
      })
      .catch(function () {});
  }

  function followEvents(url) {
    var later = debounce(refresh, 250);
    var source = new EventSource(url);
    // What changed between rendering the page and (re)connecting was sent to nobody: catch up.
    source.onopen = later;
    ["delivery", "deployment", "step", "lagged"].forEach(function (name) {
      source.addEventListener(name, later);
    });
  }

  function followLog(pre) {
    var status = document.getElementById("log-status");
    var source = new EventSource(pre.getAttribute("data-src"));
    var say = function (text) { if (status) status.textContent = text; };
    say("Following the log…");
    source.onmessage = function (e) {
      var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
      pre.appendChild(document.createTextNode(e.data + "\n"));
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    };
    source.addEventListener("end", function (e) {
      source.close();
      var state = "";
      try { state = JSON.parse(e.data).state || ""; } catch (_) {}
      pre.setAttribute("data-ended", state || "ended");
      say("ended: " + state);
    });
    source.onerror = function () {
      if (source.readyState !== EventSource.CLOSED) say("Connection lost; reconnecting…");
    };
    source.onopen = function () {
      if (!pre.hasAttribute("data-ended")) say("Following the log…");
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var main = document.querySelector("main[data-live]");
    if (main) followEvents(main.getAttribute("data-live"));
    var log = document.getElementById("log");
    if (log && log.getAttribute("data-src")) followLog(log);
  });
})();
