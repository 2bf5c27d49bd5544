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
    var count = Math.abs(left);
    output.textContent = count + (count === 1 ? " character " : " characters ") +
      (left < 0 ? "over" : "left");
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
  // Live updates (microblog.stream): an EventSource on the element with data-stream.
  // Feeds: count the announced posts in a "N new posts" button; a click inserts them at the top
  // (GET ?since=<newest shown>, the same page fragment as "Load more"). Threads: new direct
  // replies are appended when every reply is already shown (GET ?cursor=<last shown>&since=).
  // Both: a "count" event updates the "N replies" of the post it names wherever the page shows
  // it ([data-replies-count]). An "unread" event sets the top bar's notification count
  // ([data-unread-count], hidden at zero).
  // The browser reconnects by itself after a network error and sends Last-Event-ID, from which
  // the server catches up; after an error answer (a proxy's 502 while the streaming process
  // restarts) it gives up, so liveStream opens a new stream from the newest event seen. An "end"
  // event (the session was logged out, or the post can no longer be seen) stops it for good.
  // The element's data-stream-state says "open" once the server listens for this page.
  function firstPostId(container) {
    var post = container.querySelector("article.post[id^='post-']");
    return post ? post.id.slice(5) : null;
  }

  function repliesText(count) {
    return count.toLocaleString("en-US") + (count === 1 ? " reply" : " replies");
  }

  function applyCount(data) {
    var text = repliesText(data.replies);
    document.querySelectorAll("[data-replies-count='" + data.id + "']").forEach(function (el) {
      el.textContent = text;
    });
  }

  function applyUnread(data) {
    var badge = document.querySelector("[data-unread-count]");
    if (!badge) return;
    var shown = data.unread > 99 ? "99+" : String(data.unread);
    var label = badge.querySelector(".visually-hidden");
    badge.textContent = shown;
    if (label) badge.insertBefore(label, badge.firstChild);
    badge.hidden = data.unread === 0;
  }

  function liveStream(element, since, onPost) {
    var url = element.dataset.stream;
    var last = since;
    var delay = 2000;
    var source = null;
    function open() {
      source = new EventSource(url + "&since=" + last);
      source.addEventListener("open", function () {
        delay = 2000;
        element.dataset.streamState = "open";
      });
      source.addEventListener("post", function (event) {
        if (event.lastEventId) last = event.lastEventId;
        onPost(JSON.parse(event.data));
      });
      source.addEventListener("count", function (event) { applyCount(JSON.parse(event.data)); });
      source.addEventListener("unread", function (event) { applyUnread(JSON.parse(event.data)); });
      source.addEventListener("end", function () {
        source.close();
        element.dataset.streamState = "ended";
      });
      source.addEventListener("error", function () {
        if (element.dataset.streamState === "ended") return;
        element.dataset.streamState = "reconnecting";
        if (source.readyState !== EventSource.CLOSED) return;  // reconnecting by itself
        // Jittered, so the pages of a restarted streaming process do not all come back at once.
        window.setTimeout(open, delay / 2 + Math.random() * delay / 2);
        delay = Math.min(delay * 2, 16000);
      });
    }
    open();
  }

  function initLiveFeed(feed) {
    var button = document.querySelector("[data-new-posts]");
    if (!button) return;
    var pending = new Set();
    liveStream(feed, firstPostId(feed) || "0", function (data) {
      if (document.getElementById("post-" + data.id)) return;
      pending.add(data.id);
      button.textContent = pending.size === 1 ? "1 new post" : pending.size + " new posts";
      button.hidden = false;
    });
    button.addEventListener("click", function () {
      var since = firstPostId(feed) || "0";
      button.disabled = true;
      htmx.ajax("GET", window.location.pathname + "?since=" + since, {
        target: feed, swap: "afterbegin"
      }).then(function () {
        var empty = feed.querySelector(".empty");
        if (empty && feed.querySelector("article.post")) empty.remove();
        pending.clear();
        button.hidden = true;
        button.disabled = false;
      }, function () { button.disabled = false; });
    });
  }

  function initLiveThread(list) {
    var thread = list.dataset.stream.split("thread=")[1];
    var busy = false;
    var again = false;
    function lastReplyId() {
      var replies = list.querySelectorAll(":scope > li.reply > article.post");
      return replies.length ? replies[replies.length - 1].id.slice(5) : thread;
    }
    function load() {
      if (list.querySelector(":scope > .load-more-item")) return;  // "Load more" brings them
      if (busy) { again = true; return; }
      busy = true;
      // `since` marks a live-update fetch: it reads from the primary, as the feed's does, since
      // a replica may not have replayed the reply the event announced (core.replicas).
      var last = lastReplyId();
      htmx.ajax("GET", window.location.pathname + "?cursor=" + last + "&since=" + last, {
        target: list, swap: "beforeend"
      }).finally(function () {
        busy = false;
        if (again) { again = false; load(); }
      });
    }
    liveStream(list, lastReplyId(), function (data) {
      if (!document.getElementById("post-" + data.id)) load();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.EventSource || !window.htmx) return;
    var feed = document.querySelector(".feed[data-stream]");
    if (feed) initLiveFeed(feed);
    var list = document.querySelector(".replies-root[data-stream]");
    if (list) initLiveThread(list);
  });
})();
