// At 100%, the before and after panes scroll together, so the same spot stays side by side.
(function () {
  "use strict";
  const scrollers = Array.from(document.querySelectorAll(".compare.actual .scroller"));
  if (scrollers.length < 2) return;
  let leader = null;
  scrollers.forEach(function (pane) {
    pane.addEventListener("scroll", function () {
      if (leader && leader !== pane) return;
      leader = pane;
      scrollers.forEach(function (other) {
        if (other === pane) return;
        other.scrollLeft = pane.scrollLeft;
        other.scrollTop = pane.scrollTop;
      });
      window.requestAnimationFrame(function () { leader = null; });
    });
  });
})();
