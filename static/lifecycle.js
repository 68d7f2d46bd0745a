// The little the pages need beyond htmx: say what we have when a websocket (re)opens,
// keep forms posting with a CSRF token, submit auto-submitting filters, and draw the
// read -> commit link on hover.
(function () {
  "use strict";

  function shownEventIds() {
    return Array.from(document.querySelectorAll("[data-event-id]"), function (el) {
      return Number(el.dataset.eventId);
    });
  }

  function setLiveState(text, state) {
    var el = document.querySelector("[data-testid=live-state]");
    if (el) { el.textContent = text; el.dataset.state = state; }
  }

  document.addEventListener("htmx:wsOpen", function (evt) {
    setLiveState("● live", "open");
    var tasks = Array.from(document.querySelectorAll("[data-task]"), function (el) { return el.dataset.task; });
    evt.detail.socketWrapper.send(JSON.stringify({ type: "hello", have: shownEventIds(), tasks: tasks }));
  });
  document.addEventListener("htmx:wsClose", function () { setLiveState("○ reconnecting…", "closed"); });

  // A filter that applies when it changes (no inline handler: the policy allows none).
  document.addEventListener("change", function (evt) {
    if (evt.target.matches && evt.target.matches("select[data-autosubmit]")) {
      evt.target.form.submit();
    }
  });

  // Fragments pushed over the websocket carry no CSRF token; give their forms the page's.
  function fillCsrf() {
    var meta = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (!meta) { return; }
    document.querySelectorAll("form[method=post]").forEach(function (form) {
      if (!form.querySelector("input[name=csrfmiddlewaretoken]")) {
        var input = meta.cloneNode();
        form.prepend(input);
      }
    });
  }
  document.addEventListener("htmx:wsAfterMessage", fillCsrf);

  // The permalink's event stays highlighted when a live message re-renders it (a swapped
  // element is no longer the :target, so the class carries the highlight).
  function markTarget() {
    document.querySelectorAll(".ev.targeted").forEach(function (el) { el.classList.remove("targeted"); });
    var el = location.hash ? document.getElementById(decodeURIComponent(location.hash.slice(1))) : null;
    if (el && el.classList.contains("ev")) { el.classList.add("targeted"); }
  }
  markTarget();
  window.addEventListener("hashchange", markTarget);
  document.addEventListener("htmx:wsAfterMessage", markTarget);

  // Live events are appended as they arrive; move each back to its place in time order.
  function key(el) { return [Number(el.dataset.at), Number(el.dataset.eventId)]; }
  function before(a, b) { return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]); }
  var shownBefore = 0;
  // The DOM ids of dashboard/dom.py, which base.html puts on <body>.
  var ids = document.body.dataset;
  function timelineList() { return document.getElementById(ids.domTimelineEvents); }
  document.addEventListener("htmx:wsBeforeMessage", function () {
    var list = timelineList();
    shownBefore = list ? list.children.length : 0;
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    var list = timelineList();
    if (!list) { return; }
    var added = Array.prototype.slice.call(list.children, shownBefore);
    added.forEach(function (el) {
      var k = key(el), prev = el.previousElementSibling;
      if (!prev || !before(k, key(prev))) { return; }
      while (prev && before(k, key(prev))) { prev = prev.previousElementSibling; }
      list.insertBefore(el, prev ? prev.nextElementSibling : list.firstElementChild);
    });
  });

  // One click, one run: a second submit of the same form is ignored.
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (form.dataset.submitted) { evt.preventDefault(); return; }
    form.dataset.submitted = "1";
    form.querySelectorAll("button").forEach(function (b) { b.setAttribute("aria-busy", "true"); });
  });

  // All of an event's fields: the server puts them in the card's title (which is what a
  // browser without JavaScript shows); here they become a popover on hover and focus.
  // A long timeline's cards carry no title: their fields come from /api/events/<id>.
  function popover(card, pairs) {
    var dl = document.createElement("dl");
    dl.className = "ev-fields";
    dl.setAttribute("role", "tooltip");
    dl.id = "fields-" + card.parentNode.dataset.eventId;
    pairs.forEach(function (pair) {
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = pair[0];
      dd.textContent = pair.length > 1 ? pair[1] : "";
      dl.append(dt, dd);
    });
    card.setAttribute("aria-describedby", dl.id);
    card.appendChild(dl);
  }
  function showFields(card) {
    if (card.querySelector(".ev-fields") || card.dataset.fields === "loading") { return; }
    if (card.title) {
      var pairs = [];
      card.title.split("\n").forEach(function (line) {
        var at = line.indexOf(": ");
        if (at > 0 && /^[\w-]+$/.test(line.slice(0, at))) {
          pairs.push([line.slice(0, at), line.slice(at + 2)]);
        } else if (pairs.length) {  // a value's own line break (a traceback)
          pairs[pairs.length - 1][1] += "\n" + line;
        }
      });
      card.dataset.fields = card.title;
      card.removeAttribute("title");
      popover(card, pairs);
      return;
    }
    card.dataset.fields = "loading";
    fetch("/api/events/" + card.parentNode.dataset.eventId)
      .then(function (r) { return r.json(); })
      .then(function (body) { card.dataset.fields = "loaded"; popover(card, body.fields || []); })
      .catch(function () { delete card.dataset.fields; });
  }
  function onCard(evt) {
    var card = evt.target.closest && evt.target.closest(".ev-card");
    if (card) { showFields(card); }
  }
  document.addEventListener("mouseover", onCard);
  document.addEventListener("focusin", onCard);

  // Highlight the commit whose version a read returned, with a line between the two.
  var line = null;
  function clearLink() {
    document.querySelectorAll(".linked").forEach(function (el) { el.classList.remove("linked"); });
    if (line) { line.remove(); line = null; }
  }
  function showLink(readEl) {
    clearLink();
    var commit = document.getElementById(ids.domEventPrefix + readEl.dataset.versionOf);
    if (!commit) { return; }
    commit.classList.add("linked");
    readEl.classList.add("linked");
    var a = readEl.querySelector(".ev-card").getBoundingClientRect();
    var b = commit.querySelector(".ev-card").getBoundingClientRect();
    var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "link-line");
    svg.setAttribute("width", window.innerWidth);
    svg.setAttribute("height", document.documentElement.scrollHeight);
    var path = document.createElementNS("http://www.w3.org/2000/svg", "line");
    path.setAttribute("x1", a.left + a.width / 2 + window.scrollX);
    path.setAttribute("y1", a.top + window.scrollY);
    path.setAttribute("x2", b.left + b.width / 2 + window.scrollX);
    path.setAttribute("y2", b.bottom + window.scrollY);
    svg.appendChild(path);
    document.body.appendChild(svg);
    line = svg;
  }
  function onEnter(evt) {
    var el = evt.target.closest && evt.target.closest("[data-version-of]");
    if (el) { showLink(el); }
  }
  document.addEventListener("mouseover", onEnter);
  document.addEventListener("focusin", onEnter);
  document.addEventListener("mouseout", function (evt) {
    if (evt.target.closest && evt.target.closest("[data-version-of]")) { clearLink(); }
  });
  document.addEventListener("focusout", clearLink);
})();
