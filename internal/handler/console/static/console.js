// The console's only script: stacked adoption charts (uPlot), the rollout
// slider's read-out and the upload progress bar (htmx's upload events).
// Loaded from this server only; the page has no inline script.
"use strict";

(function () {
  var palette = ["#0b57d0", "#b3261e", "#146c2e", "#8e4ec6", "#b06000", "#00696f", "#5c5f62", "#c2185b", "#7a7a00"];

  // drawChart draws the series in el's data-chart stacked: each band is one
  // series, the top line the sum. The legend shows each series' own value.
  function drawChart(el) {
    var data = JSON.parse(el.getAttribute("data-chart"));
    var n = data.series.length;
    var sums = [];
    var running = data.days.map(function () { return 0; });
    for (var k = 0; k < n; k++) {
      running = running.map(function (v, i) { return v + data.series[k].values[i]; });
      sums.push(running);
    }
    // uPlot paints in order: the highest sum first, so each lower band
    // paints over the one above it.
    var series = [{}];
    var rows = [data.days];
    for (var j = n - 1; j >= 0; j--) {
      (function (k) {
        var color = palette[k % palette.length];
        series.push({
          label: data.series[k].label,
          stroke: color,
          fill: color + "55",
          width: 1.5,
          value: function (u, v, si, idx) { return idx == null ? "–" : data.series[k].values[idx].toLocaleString(); }
        });
      })(j);
      rows.push(sums[j]);
    }
    var opts = {
      width: Math.max(el.clientWidth, 280),
      height: 300,
      series: series,
      scales: { x: { time: true } },
      axes: [{}, { size: 60 }],
      cursor: { drag: { x: false, y: false } }
    };
    var plot = new uPlot(opts, rows, el);
    window.addEventListener("resize", function () { plot.setSize({ width: Math.max(el.clientWidth, 280), height: 300 }); });
  }

  function ready() {
    document.querySelectorAll("[data-chart]").forEach(drawChart);

    var slider = document.getElementById("rollout");
    var readout = document.getElementById("rollout-value");
    if (slider && readout) {
      slider.addEventListener("input", function () { readout.value = slider.value; });
    }

    var progress = document.getElementById("upload-progress");
    var percent = document.getElementById("upload-percent");
    function show(p) {
      progress.value = p;
      percent.textContent = p + " %";
    }
    if (progress) {
      document.body.addEventListener("htmx:beforeRequest", function (e) {
        if (e.target.id === "upload-form") show(0);
      });
      document.body.addEventListener("htmx:xhr:progress", function (e) {
        if (e.target.id === "upload-form" && e.detail.lengthComputable && e.detail.total > 0) {
          show(Math.round(e.detail.loaded * 100 / e.detail.total));
        }
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
