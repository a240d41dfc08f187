// The viewer: a before/after split moved by pointer, finger or keys; two panes that scroll
// together at 100%; the keyboard for the other images, the zoom and the way back.
(function () {
  "use strict";
  const SPLIT_KEY = "darkroom.split";  // the split stays where it was put, from image to image

  function storedShare() {
    const stored = sessionStorage.getItem(SPLIT_KEY);
    const share = stored === null ? NaN : Number(stored);
    return share >= 0 && share <= 100 ? share : 50;
  }

  function setUpSlider(slider) {
    const frame = slider.querySelector(".frame");
    const split = document.getElementById("split");
    const full = slider.classList.contains("full");
    let share = storedShare();
    split.closest(".split-control").hidden = false;

    // How wide the part of the picture on screen is, and where it starts: all of it when fitted,
    // the scrolled-to part at 100% (so the split stays in view however far one scrolls).
    function visible() {
      const box = (full ? slider : frame).getBoundingClientRect();
      return { left: box.left, width: full ? Math.min(slider.clientWidth, frame.offsetWidth) : box.width };
    }

    function draw() {
      const cut = full ? slider.scrollLeft + visible().width * share / 100 + "px" : share + "%";
      frame.style.setProperty("--cut", cut);
      split.value = String(Math.round(share));
      split.setAttribute("aria-valuetext", Math.round(share) + "% original");
    }

    function set(value) {
      share = Math.max(0, Math.min(100, value));
      sessionStorage.setItem(SPLIT_KEY, String(share));
      draw();
    }

    function shareAt(event) {
      const view = visible();
      return 100 * (event.clientX - view.left) / view.width;
    }

    split.addEventListener("input", function () { set(Number(split.value)); });
    slider.addEventListener("scroll", draw, { passive: true });
    window.addEventListener("resize", draw);

    // Fitted, a drag anywhere on the picture moves the split (a finger's sideways swipe
    // too: the frame leaves vertical panning to the page). At 100% a drag pans, except
    // one that starts on the divider.
    let dragging = null;
    frame.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      if (full && Math.abs(shareAt(event) - share) * visible().width / 100 > 24) return;
      dragging = event.pointerId;
      frame.setPointerCapture(event.pointerId);
      set(shareAt(event));
      event.preventDefault();
    });
    frame.addEventListener("pointermove", function (event) {
      if (event.pointerId === dragging) set(shareAt(event));
    });
    ["pointerup", "pointercancel"].forEach(function (type) {
      frame.addEventListener(type, function () { dragging = null; });
    });
    draw();
  }

  // At 100%, side by side, the panes scroll together, so the same spot stays side by side.
  function linkPanes(panes) {
    let leader = null;
    panes.forEach(function (pane) {
      pane.addEventListener("scroll", function () {
        if (leader && leader !== pane) return;
        leader = pane;
        panes.forEach(function (other) {
          if (other === pane) return;
          other.scrollLeft = pane.scrollLeft;
          other.scrollTop = pane.scrollTop;
        });
        window.requestAnimationFrame(function () { leader = null; });
      });
    });
  }

  function follow(id) {
    const link = document.getElementById(id);
    if (link) window.location.assign(link.href);
    return Boolean(link);
  }

  // ← and → for the other images, Z for the other zoom, Esc back to the gallery. Not while
  // a control has focus (the split's own arrows), nor in a picture scrolled at 100%.
  function onKey(event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.defaultPrevented) return;
    const target = event.target;
    if (target.closest("input, select, textarea, button")) return;
    const scrolling = target.closest(".stage.full");
    let done = false;
    if (event.key === "ArrowLeft" && !scrolling) done = follow("previous");
    else if (event.key === "ArrowRight" && !scrolling) done = follow("next");
    else if (event.key === "Escape") done = follow("back");
    else if (event.key === "z" || event.key === "Z") {
      const other = document.querySelector(".zoom a:not([aria-current])");
      if (other) { window.location.assign(other.href); done = true; }
    }
    if (done) event.preventDefault();
  }

  const slider = document.getElementById("slider");
  if (slider) setUpSlider(slider);
  const panes = Array.from(document.querySelectorAll(".stage.side.full .scroller"));
  if (panes.length > 1) linkPanes(panes);
  document.addEventListener("keydown", onKey);
  document.getElementById("keys").hidden = false;
})();
