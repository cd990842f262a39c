// The app's terminal: xterm.js draws, the dashboard edits the line and runs it (see
// terminal.rs). Keys go to the socket as they are typed; what comes back is written as is.
(function () {
  "use strict";
  var el = document.getElementById("terminal");
  if (!el || !window.Terminal) return;
  var term = new window.Terminal({
    cursorBlink: true,
    fontSize: 14,
    scrollback: 5000,
    fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
    theme: { background: "#111827", foreground: "#e5e7eb" }
  });
  var fit = window.FitAddon ? new window.FitAddon.FitAddon() : null;
  if (fit) term.loadAddon(fit);
  term.open(el);
  var refit = function () { if (fit) { try { fit.fit(); } catch (e) { /* hidden */ } } };
  refit();
  window.addEventListener("resize", refit);

  var scheme = location.protocol === "https:" ? "wss:" : "ws:";
  var url = scheme + "//" + location.host + "/apps/" + encodeURIComponent(el.dataset.app) +
    "/terminal/socket?csrf=" + encodeURIComponent(el.dataset.csrf);
  var ws = new WebSocket(url);
  ws.onopen = function () { el.dataset.state = "open"; term.focus(); };
  ws.onmessage = function (e) { term.write(e.data); };
  ws.onclose = function () {
    el.dataset.state = "closed";
    term.write("\r\n\x1b[31m[disconnected: reload the page to open the terminal again]\x1b[0m\r\n");
  };
  term.onData(function (data) { if (ws.readyState === 1) ws.send(data); });
})();
