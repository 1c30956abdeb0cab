// Small progressive enhancements on top of htmx; every form also works without this file.
(function () {
  "use strict";

  const TOAST_SECONDS = 8;

  function toast(message, category) {
    const region = document.getElementById(category === "error" ? "alerts" : "toasts");
    if (!region || !message) return;
    const box = document.createElement("div");
    box.className = "toast toast-" + category;
    box.setAttribute("data-toast", "");
    const text = document.createElement("p");
    text.textContent = message;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("data-dismiss", "");
    close.setAttribute("aria-label", "Dismiss message");
    close.textContent = "×";
    box.append(text, close);
    region.append(box);
    scheduleRemoval(box);
  }

  function scheduleRemoval(box) {
    // Errors stay until dismissed: they must not vanish before they are read.
    if (box.classList.contains("toast-error") || box.dataset.timer) return;
    box.dataset.timer = "1";
    setTimeout(function () { box.remove(); }, TOAST_SECONDS * 1000);
  }

  function armToasts(root) {
    root.querySelectorAll("[data-toast]").forEach(scheduleRemoval);
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-dismiss]");
    if (button) button.closest("[data-toast]").remove();
  });

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
    const runNow = element.querySelector && element.querySelector("#run-now[aria-disabled='true']");
    if (runNow) {
      event.preventDefault();
      toast("A backup is already running.", "error");
    }
  });

  function refreshStatus() {
    const status = document.getElementById("schedule-status");
    if (status && !pollingPaused(status) && window.htmx) window.htmx.trigger(status, "refresh");
  }
  document.addEventListener("visibilitychange", refreshStatus);
  document.addEventListener("toggle", refreshStatus, true);

  // When the status region shows a new finished run, refresh the lists and announce it.
  // "Backup DB now" (a form marked data-announces-run) waits for its backup, and its
  // answer says how it went: the status region must not announce that run a second time.
  // syncBackup: null; "waiting" for the answer; "seen" (its run showed up first, its
  // message held back in heldMessage); "answered" (the next new run is the answered one).
  let lastRun = null;
  let syncBackup = null;
  let heldMessage = null;

  function announcesRun(event) {
    const element = event.detail.elt;
    return element && element.hasAttribute && element.hasAttribute("data-announces-run");
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (announcesRun(event) && !event.defaultPrevented) syncBackup = "waiting";
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    if (!announcesRun(event)) return;
    const answered = event.detail.xhr && event.detail.xhr.status === 200;
    if (answered) {
      syncBackup = syncBackup === "seen" ? null : "answered";
    } else {
      if (heldMessage) toast(heldMessage.text, heldMessage.category);
      syncBackup = null;
    }
    heldMessage = null;
  });

  function followStatus(status) {
    const running = status.dataset.running === "true";
    const runNow = document.getElementById("run-now");
    if (runNow) {
      if (running) runNow.setAttribute("aria-disabled", "true");
      else runNow.removeAttribute("aria-disabled");
    }
    const current = status.dataset.lastRun || "";
    if (lastRun !== null && current !== lastRun) {
      document.body.dispatchEvent(new CustomEvent("history-changed"));
      document.body.dispatchEvent(new CustomEvent("backups-changed"));
      const message = {
        text: status.dataset.lastResult,
        category: status.dataset.lastStatus === "success" ? "success" : "error",
      };
      if (syncBackup === "waiting") {
        syncBackup = "seen";
        heldMessage = message;
      } else if (syncBackup === "answered") {
        syncBackup = null;
      } else {
        toast(message.text, message.category);
      }
    }
    lastRun = current;
  }

  // Errors htmx does not swap (5xx, lost connection) still get a message, once.
  function toastOnce(message) {
    const region = document.getElementById("alerts");
    const shown = region && Array.from(region.querySelectorAll("[data-toast] p")).some(function (p) {
      return p.textContent === message;
    });
    if (!shown) toast(message, "error");
  }

  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    toastOnce(xhr.getResponseHeader("X-Error-Message") || "The server could not do that (error " + xhr.status + ").");
  });

  document.addEventListener("htmx:sendError", function () {
    toastOnce("The server cannot be reached. The page will update when it is back.");
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    const target = event.detail.elt;
    armToasts(document);
    const status = document.getElementById("schedule-status");
    if (status) followStatus(status);
    const summary = target && target.querySelector && target.querySelector(".error-summary");
    if (summary) summary.focus();
  });

  document.addEventListener("DOMContentLoaded", function () {
    armToasts(document);
    const status = document.getElementById("schedule-status");
    if (status) followStatus(status);
  });
})();
