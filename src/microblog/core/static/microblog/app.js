// Small progressive enhancements; every page works without this file.
(function () {
  "use strict";

  // Live character counter for any textarea with data-counter="<limit>".
  function updateCounter(textarea) {
    var limit = parseInt(textarea.getAttribute("data-counter"), 10);
    var form = textarea.form;
    var output = form && form.querySelector("output.counter[for='" + textarea.id + "']");
    if (!output) return;
    // Count what the server counts: trimmed text, code points, \r\n as one character.
    var length = Array.from(textarea.value.replace(/\r\n/g, "\n").trim()).length;
    var left = limit - length;
    output.textContent = left + " characters left";
    output.classList.toggle("counter-warn", left <= 20 && left >= 0);
    output.classList.toggle("counter-over", left < 0);
    var submit = form.querySelector("button[type=submit]");
    if (submit) submit.disabled = left < 0;
  }

  function initCounters(root) {
    root.querySelectorAll("textarea[data-counter]").forEach(function (textarea) {
      if (textarea.dataset.counterReady) return;
      textarea.dataset.counterReady = "1";
      textarea.addEventListener("input", function () { updateCounter(textarea); });
      updateCounter(textarea);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { initCounters(document); });
  document.addEventListener("htmx:afterSwap", function (event) { initCounters(event.target); });
})();
