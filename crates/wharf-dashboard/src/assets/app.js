// Small progressive enhancements: a deploy streams its build log into the page (and it stays
// there, with a link to the release's page), app logs follow live over server-sent events.
// Every page works without this script.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const deploy = document.querySelector("form[data-deploy]");
  if (deploy) {
    deploy.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = document.getElementById("deploy-log");
      const status = document.getElementById("deploy-status");
      const button = deploy.querySelector("button");
      out.hidden = false; out.textContent = ""; status.textContent = "Deploying…";
      button.disabled = true;
      try {
        const resp = await fetch(deploy.action, {
          method: "POST", body: new URLSearchParams(new FormData(deploy)),
        });
        const reader = resp.body.getReader();
        const text = new TextDecoder();
        let last = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          const chunk = text.decode(value, { stream: true });
          out.textContent += chunk; out.scrollTop = out.scrollHeight;
          last = out.textContent.trim().split("\n").pop();
        }
        status.textContent = last;
        status.className = last.startsWith("✓") ? "flash ok" : "flash err";
        // The log stays on screen; links lead to the release's page (its kept log) and to
        // the app's page as it is now.
        const links = document.getElementById("deploy-links");
        if (links) {
          links.replaceChildren();
          const m = out.textContent.match(/^release (\d+) of /m);
          const add = (href, label, id) => {
            const a = document.createElement("a");
            a.href = href; a.textContent = label; if (id) a.id = id; links.append(a);
          };
          if (m) add(deploy.dataset.releases + m[1], "Open release " + m[1] + " and its build log", "deploy-release");
          add(location.pathname, "Refresh this page");
          links.hidden = false;
        }
      } catch (e) {
        status.textContent = "The deploy request failed: " + e; status.className = "flash err";
      } finally { button.disabled = false; }
    });
  }
  const logs = document.getElementById("app-logs");
  if (logs && logs.dataset.live && window.EventSource) {
    const es = new EventSource(logs.dataset.live);
    es.onmessage = (m) => {
      const atEnd = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
      logs.textContent += m.data + "\n";
      if (atEnd) logs.scrollTop = logs.scrollHeight;
    };
  }
  document.querySelectorAll("pre.log").forEach((p) => { p.scrollTop = p.scrollHeight; });
});
