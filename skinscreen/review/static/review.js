// skinscreen review page: heatmap toggle and keyboard shortcuts (m, b, u: verdicts; h: heatmap).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const heatmap = document.getElementById("heatmap");
  const toggle = document.getElementById("toggle-heatmap");
  const status = document.getElementById("heatmap-status");
  const form = document.getElementById("verdict-form");
  // No heatmap element: the case has no score, or its model is not on this server (the page says which).
  const hasHeatmap = Boolean(heatmap && toggle);

  const showHeatmap = (on) => {
    heatmap.hidden = !on;
    toggle.setAttribute("aria-pressed", String(on));
    toggle.firstChild.textContent = on ? "Hide heatmap " : "Show heatmap ";
  };

  if (hasHeatmap) {
    // The heatmap is made on the server on first view; start fetching it at once so the toggle is instant.
    heatmap.addEventListener("load", () => {
      heatmap.dataset.loaded = "true";
      status.textContent = "";
    });
    heatmap.addEventListener("error", () => {
      status.textContent = "Heatmap unavailable.";
    });
    status.textContent = "Computing heatmap…";
    heatmap.src = heatmap.dataset.src;
    toggle.addEventListener("click", () => showHeatmap(heatmap.hidden));
  }

  if (form) {
    // Audit cases have no heatmap until the verdict, but the verdict keys work the same.
    document.addEventListener("keydown", (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      const target = event.target;
      if (target instanceof HTMLElement && target.closest("input, textarea, select")) return;
      const key = event.key.toLowerCase();
      if (key === "h" && hasHeatmap) {
        event.preventDefault();
        showHeatmap(heatmap.hidden);
        return;
      }
      const button = form.querySelector(`button[data-key="${key}"]`);
      if (button) {
        event.preventDefault();
        form.requestSubmit(button);
      }
    });
  }
});
