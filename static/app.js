// Makes the overview's progress live: server-sent events, or polling when they do not get
// through. The page reads the same without it (it refreshes itself while a run is in progress).
(function () {
  var box = document.getElementById("progress-text");
  if (!box) { return; }
  var lastSeen = null;
  function show(p) {
    if (p.running) {
      box.textContent = "A run is in progress: " + p.bytes_text(p.running) + ", for " + p.running.seconds + " s.";
      document.getElementById("progress").setAttribute("data-running", "1");
    } else {
      var was = document.getElementById("progress").getAttribute("data-running") === "1";
      document.getElementById("progress").removeAttribute("data-running");
      if (p.last && (was || (lastSeen !== null && lastSeen !== p.last.number))) {
        box.textContent = "Run finished: " + p.last.outcome + ". " + p.last.summary + ".";
        box.setAttribute("data-outcome", p.last.outcome);
      } else if (!box.getAttribute("data-outcome")) {
        box.textContent = "No run in progress.";
      }
    }
    if (p.last) { lastSeen = p.last.number; }
  }
  function take(text) {
    var p = JSON.parse(text);
    p.bytes_text = function (r) { return r.bytes + " moved"; };
    show(p);
  }
  // A live page has no need of the refresh that stands in for this script.
  var refresh = document.querySelector('meta[http-equiv="refresh"]');
  if (refresh) { refresh.parentNode.removeChild(refresh); }
  function poll() {
    fetch("/progress", { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(take)
      .catch(function () {})
      .then(function () { setTimeout(poll, 2000); });
  }
  if (window.EventSource) {
    var events = new EventSource("/events");
    var got = false;
    events.addEventListener("progress", function (e) { got = true; take(e.data); });
    events.onerror = function () { if (!got) { events.close(); poll(); } };
  } else {
    poll();
  }
})();
