// Small progressive enhancements on top of htmx; every form also works without this file.
(function () {
  "use strict";

  const TOAST_SECONDS = 8;
  let toastSequence = 0;

  // Toasts: one per source (a form or an action). A new outcome of the same source
  // replaces the earlier one, so a later success never sits beside a stale error.
  function toast(message, category, source) {
    const region = document.getElementById(category === "error" ? "alerts" : "toasts");
    if (!region || !message) return;
    const box = document.createElement("div");
    box.className = "toast toast-" + category;
    box.setAttribute("data-toast", "");
    if (source) box.setAttribute("data-source", source);
    const text = document.createElement("p");
    text.textContent = message;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("data-dismiss", "");
    close.setAttribute("aria-label", "Dismiss message");
    close.textContent = "×";
    box.append(text, close);
    region.prepend(box);
    armToasts(document);
  }

  function scheduleRemoval(box) {
    // Errors stay until dismissed or replaced: they must not vanish before they are read.
    if (box.classList.contains("toast-error") || box.dataset.timer) return;
    box.dataset.timer = "1";
    setTimeout(function () { box.remove(); }, TOAST_SECONDS * 1000);
  }

  function armToasts(root) {
    root.querySelectorAll("[data-toast]").forEach(function (box) {
      if (!box.dataset.seq) box.dataset.seq = String(++toastSequence);
      scheduleRemoval(box);
    });
    // Keep only the newest toast of each source: by the server's order when both carry one
    // (a run's "finished" may arrive before its "started"), else by arrival.
    const newest = {};
    document.querySelectorAll("[data-toast][data-source]").forEach(function (box) {
      const source = box.dataset.source;
      if (!newest[source] || isNewer(box, newest[source])) {
        if (newest[source]) newest[source].remove();
        newest[source] = box;
      } else {
        box.remove();
      }
    });
  }

  function isNewer(box, other) {
    if (box.dataset.order && other.dataset.order) {
      return Number(box.dataset.order) > Number(other.dataset.order);
    }
    return Number(box.dataset.seq) > Number(other.dataset.seq);
  }

  function removeToasts(source) {
    document.querySelectorAll("[data-toast][data-source='" + source + "']").forEach(function (box) { box.remove(); });
  }

  document.addEventListener("click", function (event) {
    // The dismiss control is a link to the page (it works without JavaScript, too).
    const control = event.target.closest("[data-dismiss]");
    if (!control) return;
    event.preventDefault();
    control.closest("[data-toast]").remove();
  });

  // Field errors from the last save stop applying once the field is edited: clear them, and
  // the summary's entry; a summary with no entry left goes, with the form's error toast.
  function clearFieldError(control) {
    const field = control.closest && control.closest(".has-error");
    if (!field || !field.closest("form")) return;
    field.classList.remove("has-error");
    field.querySelectorAll(".field-error").forEach(function (message) {
      [field].concat(Array.from(field.querySelectorAll("[aria-describedby]"))).forEach(function (element) {
        const ids = (element.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
          return id && id !== message.id;
        });
        if (ids.length) element.setAttribute("aria-describedby", ids.join(" "));
        else element.removeAttribute("aria-describedby");
      });
      message.remove();
    });
    field.querySelectorAll("[aria-invalid]").forEach(function (element) { element.removeAttribute("aria-invalid"); });
    pruneErrorSummaries();
  }

  function pruneErrorSummaries() {
    document.querySelectorAll(".error-summary").forEach(function (summary) {
      summary.querySelectorAll("li").forEach(function (item) {
        const link = item.querySelector("a[href^='#']");
        const target = link && document.getElementById(link.getAttribute("href").slice(1));
        const stillWrong = target && (target.classList.contains("has-error") || target.closest(".has-error"));
        if (!stillWrong) item.remove();
      });
      if (!summary.querySelector("li")) {
        const form = summary.closest("form");
        summary.remove();
        if (form && form.id) removeToasts(form.id);
      }
    });
  }

  document.addEventListener("input", function (event) { clearFieldError(event.target); });
  document.addEventListener("change", function (event) { clearFieldError(event.target); });

  // Polling: skip while the tab is hidden or the Schedule block is collapsed.
  function pollingPaused(element) {
    const details = element.closest("details");
    return document.hidden || (details && !details.open);
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    const element = event.detail.elt;
    if (element.hasAttribute("data-poll") && pollingPaused(element)) {
      event.preventDefault();
      return;
    }
    // A run-now button the server marked busy: say so instead of asking again.
    const runNow = element.querySelector && element.querySelector("[data-run-now][aria-disabled='true']");
    if (runNow) {
      event.preventDefault();
      toast(runNow.dataset.busyMessage, "error", "run-" + runNow.id.replace(/^run-now-/, ""));
    }
  });

  function refreshStatus() {
    const poll = document.getElementById("schedule-poll");
    if (poll && !pollingPaused(poll) && window.htmx) window.htmx.trigger(poll, "refresh");
  }
  document.addEventListener("visibilitychange", refreshStatus);
  document.addEventListener("toggle", refreshStatus, true);

  // When polls fail the status is not known: say so instead of showing the last answer as current.
  function markStatusStale() {
    document.querySelectorAll("section.status").forEach(function (status) {
      if (status.classList.contains("stale")) return;
      status.classList.add("stale");
      const scheduler = status.querySelector("[data-scheduler-state]");
      if (!scheduler) return;
      const badge = document.createElement("span");
      badge.className = "badge warn";
      badge.textContent = "Unknown";
      scheduler.replaceChildren(badge, " the server cannot be reached; the values below may be out of date.");
    });
  }

  function isStatusRequest(event) {
    const element = event.detail.elt;
    return element && element.id === "schedule-poll";
  }

  // Errors htmx does not swap (5xx, lost connection) still get a message, once.
  function toastOnce(message) {
    const region = document.getElementById("alerts");
    const shown = region && Array.from(region.querySelectorAll("[data-toast] p")).some(function (p) {
      return p.textContent === message;
    });
    if (!shown) toast(message, "error", "connection");
  }

  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    if (isStatusRequest(event)) markStatusStale();
    toastOnce(xhr.getResponseHeader("X-Error-Message") || "The server could not do that (error " + xhr.status + ").");
  });

  document.addEventListener("htmx:sendError", function (event) {
    if (isStatusRequest(event)) markStatusStale();
    toastOnce("The server cannot be reached. The page will update when it is back.");
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    const target = event.detail.elt;
    armToasts(document);
    if (isStatusRequest(event)) removeToasts("connection");
    pruneErrorSummaries();
    const summary = target && target.querySelector && target.querySelector(".error-summary");
    if (summary) summary.focus();
    // After a delete the server marks where focus goes (the next row, else the empty message).
    const next = document.querySelector("[data-autofocus]");
    if (next) {
      next.removeAttribute("data-autofocus");
      next.focus();
    }
  });

  document.addEventListener("DOMContentLoaded", function () { armToasts(document); });
})();
