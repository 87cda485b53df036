/* Draws a small trend line per vital sign on the chart (templates/records/chart.html).
 *
 * The readings come from a json_script element filled by the audited chart read (no inline script,
 * no other request: the CSP allows scripts from this origin only). Each line has a caption and the
 * vitals table beside it, so nothing here is the only way to read the values. Points outside the
 * reference range are drawn larger and red, and their flag is in the tooltip as text.
 *
 * Also marks the chart section nav's link of the section in view (progressive enhancement: the
 * links are plain anchors and work without this).
 */
(function () {
  "use strict";

  function drawTrends() {
    var source = document.getElementById("vital-trends-data");
    if (!source || typeof window.Chart === "undefined") {
      return;
    }
    var data = JSON.parse(source.textContent);
    var byKey = {};
    data.series.forEach(function (series) { byKey[series.key] = series; });
    var labels = { L: "low", H: "high", LL: "critical low", HH: "critical high" };

    document.querySelectorAll("canvas[data-vital]").forEach(function (canvas) {
      var series = byKey[canvas.getAttribute("data-vital")];
      if (!series) {
        return;
      }
      var flagged = series.points.map(function (p) { return Boolean(labels[p.flag]); });
      var datasets = [{
        label: series.label + (series.unit ? " (" + series.unit + ")" : ""),
        data: series.points.map(function (p) { return p.value; }),
        borderColor: "#0b5e7e",
        backgroundColor: flagged.map(function (f) { return f ? "#d1242f" : "#0b5e7e"; }),
        pointRadius: flagged.map(function (f) { return f ? 4 : 2; }),
        fill: false,
        tension: 0.2
      }];
      ["low", "high"].forEach(function (bound) {
        if (series[bound] !== null && series[bound] !== undefined) {
          datasets.push({
            label: "reference " + bound,
            data: series.points.map(function () { return series[bound]; }),
            borderColor: "#8796a5",
            borderDash: [4, 4],
            borderWidth: 1,
            pointRadius: 0,
            fill: false
          });
        }
      });
      new window.Chart(canvas, {
        type: "line",
        data: { labels: series.points.map(function (p) { return p.at; }), datasets: datasets },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          scales: { x: { ticks: { maxTicksLimit: 4, autoSkip: true } } },
          plugins: {
            legend: { display: false },
            tooltip: {
              callbacks: {
                afterLabel: function (item) {
                  if (item.datasetIndex !== 0) {
                    return "";
                  }
                  return labels[series.points[item.dataIndex].flag] || "";
                }
              }
            }
          }
        }
      });
      canvas.setAttribute("data-drawn", "true");
    });
  }

  function markSectionInView() {
    var links = document.querySelectorAll(".chart-nav a[href^='#section-']");
    if (!links.length || typeof window.IntersectionObserver === "undefined") {
      return;
    }
    var byId = {};
    links.forEach(function (link) {
      byId[link.getAttribute("href").slice(1)] = link;
      // The last sections may be too short to scroll into the band below: a click marks its link.
      link.addEventListener("click", function () {
        links.forEach(function (other) { other.removeAttribute("aria-current"); });
        link.setAttribute("aria-current", "true");
      });
    });
    var observer = new window.IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting && byId[entry.target.id]) {
          links.forEach(function (link) { link.removeAttribute("aria-current"); });
          byId[entry.target.id].setAttribute("aria-current", "true");
        }
      });
    }, { rootMargin: "-30% 0px -60% 0px" });
    Object.keys(byId).forEach(function (id) {
      var section = document.getElementById(id);
      if (section) {
        observer.observe(section);
      }
    });
  }

  drawTrends();
  markSectionInView();
})();
