// The little the pages need beyond htmx: say what we have when a websocket (re)opens,
// keep forms posting with a CSRF token, submit auto-submitting filters, and draw the
// read -> commit link on hover.
(function () {
  "use strict";

  // The DOM ids of dashboard/dom.py, which base.html puts on <body>.
  var ids = document.body.dataset;

  function shownEventIds() {
    return Array.from(document.querySelectorAll("[data-event-id]"), function (el) {
      return Number(el.dataset.eventId);
    });
  }

  function setLiveState(text, state) {
    var el = document.querySelector("[data-testid=live-state]");
    if (el) { el.textContent = text; el.dataset.state = state; }
  }

  // The folded runs of reads the page shows: [first id, count, last id] each, so a live
  // read extends its run, and the reads folded in it are not sent again.
  function shownRuns() {
    return Array.from(document.querySelectorAll(".run-summary"), function (el) {
      return [Number(el.id.slice(ids.domRunPrefix.length).split("-")[0]), Number(el.dataset.count), Number(el.dataset.lastId)];
    });
  }

  document.addEventListener("htmx:wsOpen", function (evt) {
    setLiveState("● live", "open");
    var tasks = Array.from(document.querySelectorAll("[data-task]"), function (el) { return el.dataset.task; });
    var hello = { type: "hello", have: shownEventIds(), tasks: tasks, runs: shownRuns() };
    var timeline = document.querySelector("[data-known-until]");
    // A long timeline's page knows every event up to this id, shown or in a window.
    if (timeline && timeline.dataset.windowed) { hello.known_until = Number(timeline.dataset.knownUntil); }
    evt.detail.socketWrapper.send(JSON.stringify(hello));
  });
  document.addEventListener("htmx:wsClose", function (evt) {
    var close = evt.detail && evt.detail.event;
    // 4429: this session holds as many live pages as the server allows; no retry (daphne
    // sends the code without its reason).
    if (close && close.code === 4429) {
      setLiveState("○ not live: too many live pages open in this session; close one and reload", "refused");
      return;
    }
    // 4401: the session ended (a logout, an expiry, an account switched off); no retry
    // until the reader signs in again.
    if (close && close.code === 4401) {
      setLiveState("○ not live: signed out; sign in again", "signed-out");
      return;
    }
    setLiveState("○ reconnecting…", "closed");
  });

  // What a screen reader hears of a live page: each new finding and the verdict, once,
  // through one polite live region; never the reads and commits as they arrive (the
  // timeline is not a live region).
  function findingsNow() {
    return Array.from(document.querySelectorAll("[data-testid=finding]"), function (el) {
      return el.dataset.kind.replace(/_/g, " ") + (el.dataset.cause ? " (" + el.dataset.cause.replace(/_/g, " ") + ")" : "");
    });
  }
  function verdictNow() {
    var v = document.querySelector("[data-testid=verdict]");
    if (!v || !v.dataset.verdict) { return ""; }
    var chips = Array.from(v.querySelectorAll(".chip[data-status]"), function (c) { return c.dataset.status; });
    return "Verdict: " + v.dataset.verdict + (chips.length === 2 ? ": expected " + chips[0] + ", observed " + chips[1] : "") + ".";
  }
  var heard = { findings: findingsNow(), verdict: verdictNow() };
  function announce(text) {
    var region = document.getElementById("announcer");
    if (!region) { return; }
    var p = document.createElement("p");
    p.textContent = text;  // text, never markup: a kind or a status came from the page
    region.appendChild(p);
    while (region.children.length > 5) { region.removeChild(region.firstElementChild); }
  }
  document.addEventListener("htmx:wsAfterMessage", function () {
    var said = [], before = heard.findings.slice(), now = findingsNow(), verdict = verdictNow();
    now.forEach(function (kind) {
      var i = before.indexOf(kind);
      if (i >= 0) { before.splice(i, 1); } else { said.push("New finding: " + kind + "."); }
    });
    if (verdict && verdict !== heard.verdict) { said.push(verdict); }
    heard = { findings: now, verdict: verdict };
    if (said.length) { announce(said.join(" ")); }
  });

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

  // Live events are appended as they arrive (marked "fresh"); move each back to its
  // place in time order. A window not loaded yet has a time and no id: nothing moves
  // past it.
  function key(el) { return [Number(el.dataset.at), Number(el.dataset.eventId || 0)]; }
  function before(a, b) { return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]); }
  function timelineList() { return document.getElementById(ids.domTimelineEvents); }
  document.addEventListener("htmx:wsAfterMessage", function () {
    var list = timelineList();
    if (!list) { return; }
    list.querySelectorAll(":scope > .fresh").forEach(function (el) {
      el.classList.remove("fresh");
      var k = key(el), prev = el.previousElementSibling;
      if (!prev || !before(k, key(prev))) { return; }
      while (prev && before(k, key(prev))) { prev = prev.previousElementSibling; }
      list.insertBefore(el, prev ? prev.nextElementSibling : list.firstElementChild);
    });
  });

  // A folded run of reads expands in place: its reads load on first opening.
  function loadRun(row) {
    var list = row.querySelector(".run-events"), summary = row.querySelector(".run-summary");
    var timeline = row.closest("[data-reads-url]");
    if (!timeline) { return Promise.resolve(); }
    if (!list.loading) {
      var first = row.id.slice(ids.domRunPrefix.length);
      var url = timeline.dataset.readsUrl + "?first=" + first + "&last=" + summary.dataset.lastId;
      list.loading = getHtml(url).then(function (html) {
        // Reads appended live while this was on its way stay, after the ones it lists.
        var live = Array.prototype.slice.call(list.children);
        list.innerHTML = html;  // rendered and escaped by the server
        live.forEach(function (el) { if (!document.getElementById(el.id)) { list.appendChild(el); } });
        list.dataset.loaded = "1";
      }, function (err) { list.loading = null; throw err; });
    }
    return list.loading;
  }
  // Rows the server renders (and escapes), fetched by the parts of a page that load on
  // demand: a run's reads, a window of a long timeline, a group of the outline's commits.
  function getHtml(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    });
  }
  function replaceWith(el, html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    var nodes = Array.prototype.slice.call(t.content.children);
    el.replaceWith(t.content);
    return nodes;
  }

  // A long timeline's windows load as they come near the view (or on their button).
  function loadWindow(w) {
    if (!w.loading) {
      var button = w.querySelector("button");
      w.classList.add("loading");
      w.loading = getHtml(w.dataset.url).then(function (html) {
        replaceWith(w, html).forEach(function (n) { if (n.matches("li.window")) { watch(n); } });
      }, function (err) {
        w.loading = null;
        w.classList.remove("loading");
        if (button) { button.textContent = "Could not load these events (" + err.message + "): try again"; }
      });
    }
    return w.loading;
  }
  var near = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (e) { if (e.isIntersecting) { near.unobserve(e.target); loadWindow(e.target); } });
  }, { rootMargin: "400px 0px" }) : null;
  function watch(w) { w.dataset.watched = "1"; if (near) { near.observe(w); } }
  document.querySelectorAll("li.window").forEach(watch);
  // A catch-up that could not send every event it lacked sends a window for the rest.
  document.addEventListener("htmx:wsAfterMessage", function () {
    document.querySelectorAll("li.window:not([data-watched])").forEach(watch);
  });
  document.addEventListener("click", function (evt) {
    var w = evt.target.closest && evt.target.closest("li.window");
    if (w) { loadWindow(w); return; }
    var more = evt.target.closest && evt.target.closest("li.run-more, li.commit-more");
    if (more && !more.loading) {
      more.loading = getHtml(more.dataset.url).then(function (html) { replaceWith(more, html); });
    }
  });
  // A group of the outline's commits loads when it is first opened ("toggle" does not
  // bubble: listen while it goes down).
  document.addEventListener("toggle", function (evt) {
    var group = evt.target;
    if (!group.matches || !group.matches("details[data-url]") || !group.open || group.loaded) { return; }
    group.loaded = getHtml(group.dataset.url).then(function (html) {
      group.querySelector("ol").innerHTML = html;
    }, function () { group.loaded = null; });
  }, true);
  function setRunOpen(row, open) {
    var list = row.querySelector(".run-events"), button = row.querySelector(".run-toggle");
    list.hidden = !open;
    button.setAttribute("aria-expanded", open ? "true" : "false");
    button.textContent = open ? "fold them" : "show each";
    row.classList.toggle("open", open);
  }
  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest(".run-toggle");
    if (!button) { return; }
    var row = button.closest(".run");
    var open = button.getAttribute("aria-expanded") !== "true";
    setRunOpen(row, open);
    if (open) { loadRun(row); }
  });

  // A link to an event the page does not show yet (#event-N): in a folded run, the run
  // opens; in a window not loaded, the window loads; then the event scrolls into view.
  // The runs of reads of that source whose span holds the place, not opened yet (one of
  // another client may span it too: each is opened in turn).
  function findRun(source, cursor) {
    return Array.from(document.querySelectorAll(".run[data-source='" + source + "']")).find(function (row) {
      var summary = row.querySelector(".run-summary");
      return !row.querySelector(".run-events").dataset.loaded && !before(cursor, key(row)) &&
        !before([Number(summary.dataset.lastAt), Number(summary.dataset.lastId)], cursor);
    });
  }
  function place(text) {
    var parts = (text || "").split(".");
    return parts.length === 2 ? [Number(parts[0]), Number(parts[1])] : null;
  }
  function findWindow(cursor) {
    return Array.from(document.querySelectorAll("li.window")).find(function (w) {
      var after = place(w.dataset.after), until = place(w.dataset.before);
      return (!after || before(after, cursor)) && (!until || before(cursor, until));
    });
  }
  // focus: a link on the page led here (a finding's, a mark's): the event takes the
  // focus, so that Tab goes on from it and a screen reader reads it.
  function reveal(attempts, focus) {
    var m = location.hash.startsWith("#" + ids.domEventPrefix) &&
      /^(\d+)$/.exec(location.hash.slice(ids.domEventPrefix.length + 1));
    if (!m || attempts > 40) { return; }
    var el = document.getElementById(ids.domEventPrefix + m[1]);
    if (el) {
      var folded = el.closest(".run-events[hidden]");
      if (folded) {
        var run = folded.closest(".run");
        setRunOpen(run, true);
        loadRun(run).then(function () { reveal(attempts + 1, focus); });
        return;
      }
      markTarget();
      el.scrollIntoView({ block: "center" });
      var time = el.querySelector(":scope > .ev-time");
      if (focus && time && document.activeElement !== time) { time.focus({ preventScroll: true }); }
      return;
    }
    if (!timelineList()) { return; }
    fetch("/api/events/" + m[1])
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body || !body.cursor) { return; }
        var cursor = place(body.cursor);
        var run = findRun(body.event.source, cursor);
        if (run) {
          setRunOpen(run, true);
          loadRun(run).then(function () { reveal(attempts + 1, focus); });
          return;
        }
        var w = findWindow(cursor);
        if (w) { loadWindow(w).then(function () { reveal(attempts + 1, focus); }); }
      });
  }
  window.addEventListener("hashchange", function () { reveal(0, true); });
  if (location.hash) { window.addEventListener("load", function () { reveal(0, false); }); }
  // A link to the event the address already names changes no hash: reveal it again.
  document.addEventListener("click", function (evt) {
    var a = evt.target.closest && evt.target.closest("a[href^='#" + ids.domEventPrefix + "']");
    if (a && a.getAttribute("href") === location.hash) { reveal(0, true); }
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
    dl.id = "fields-" + card.parentNode.dataset.eventId;
    pairs.forEach(function (pair) {
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = pair[0];
      dd.textContent = pair.length > 1 ? pair[1] : "";
      dl.append(dt, dd);
    });
    card.appendChild(dl);
    describe(card);
  }
  // The row's time link is its stop for Tab: a screen reader reads the card and its
  // fields as the link's description.
  function describe(card) {
    var time = card.previousElementSibling, dl = card.querySelector(".ev-fields");
    if (!time || !time.classList.contains("ev-time")) { return; }
    if (!card.id) { card.id = "card-" + card.parentNode.dataset.eventId; }
    time.setAttribute("aria-describedby", card.id + (dl ? " " + dl.id : ""));
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
    if (!evt.target.closest) { return; }
    var time = evt.target.closest(".ev-time");
    var card = time ? time.nextElementSibling : evt.target.closest(".ev-card");
    if (card && card.classList.contains("ev-card")) { describe(card); showFields(card); }
  }
  document.addEventListener("mouseover", onCard);
  document.addEventListener("focusin", onCard);
  // Escape hides the fields a focus showed, without moving the focus (WCAG 1.4.13); they
  // show again when the focus comes back.
  document.addEventListener("keydown", function (evt) {
    if (evt.key !== "Escape" || !evt.target.closest) { return; }
    var row = evt.target.closest(".ev");
    var card = row && row.querySelector(":scope > .ev-card");
    if (card) { card.classList.add("fields-hidden"); }
  });
  document.addEventListener("focusout", function (evt) {
    var row = evt.target.closest && evt.target.closest(".ev");
    var card = row && row.querySelector(":scope > .ev-card.fields-hidden");
    if (card) { card.classList.remove("fields-hidden"); }
  });

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
