/* A plugin in plain C99: proves plugin_api.h is C. It reports the mean modality value (e.g. HU) of the middle
 * frame of the first series as a measurement on an "indeterminate" finding. Test fixture, not a model. */
#include <aihub/plugin_api.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct aihub_plugin_instance {
  const aihub_host_api* host;
  aihub_plugin_context* ctx;
  double scale;
};

static const aihub_plugin_descriptor kDescriptor = {
    sizeof(aihub_plugin_descriptor), AIHUB_PLUGIN_API_VERSION_MAJOR, AIHUB_PLUGIN_API_VERSION_MINOR,
    "c-minimal", "Mean intensity (C test plugin)", "1.0.0", "none", "aihub tests",
    "{Modality: CT}", 0};

const aihub_plugin_descriptor* aihub_plugin_describe(void) { return &kDescriptor; }

int32_t aihub_plugin_create(const aihub_host_api* host, aihub_plugin_context* ctx, aihub_plugin_instance** out) {
  aihub_plugin_instance* self;
  if (host->api_version_major != AIHUB_PLUGIN_API_VERSION_MAJOR) return AIHUB_FAILED_PRECONDITION;
  self = (aihub_plugin_instance*)calloc(1, sizeof *self);
  if (self == NULL) return AIHUB_RESOURCE_EXHAUSTED;
  self->host = host;
  self->ctx = ctx;
  self->scale = host->config_number(ctx, "scale", 1.0);
  host->log(ctx, AIHUB_LOG_INFO, "c-minimal created");
  *out = self;
  return AIHUB_OK;
}

int32_t aihub_plugin_execute(aihub_plugin_instance* self, aihub_job* job) {
  const aihub_host_api* h = self->host;
  aihub_frame_geometry g;
  aihub_finding finding;
  aihub_measurement m;
  aihub_region region;
  float* pixels;
  float points[2];
  uint32_t frames, mid, index = 0;
  uint64_t i, n;
  double sum = 0;
  int32_t rc;
  char text[128];

  if (h->series_count(job) == 0) {
    h->job_set_error(job, "no series");
    return AIHUB_FAILED_PRECONDITION;
  }
  frames = h->frame_count(job, 0);
  mid = frames / 2;
  memset(&g, 0, sizeof g);
  g.struct_size = sizeof g;
  rc = h->frame_geometry(job, 0, mid, &g);
  if (rc != AIHUB_OK) return rc;
  n = (uint64_t)g.rows * g.columns;
  pixels = (float*)malloc(n * sizeof(float));
  if (pixels == NULL) return AIHUB_RESOURCE_EXHAUSTED;
  rc = h->read_frame(job, 0, mid, AIHUB_PIXEL_FLOAT32_MODALITY, pixels, n * sizeof(float));
  if (rc != AIHUB_OK) {
    free(pixels);
    h->job_set_error(job, "cannot read the middle frame");
    return rc;
  }
  for (i = 0; i < n; ++i) sum += pixels[i];
  free(pixels);

  memset(&finding, 0, sizeof finding);
  finding.struct_size = sizeof finding;
  finding.code.value = "C-MEAN";
  finding.code.scheme = "99AIHUB";
  finding.code.meaning = "Mean intensity check";
  finding.presence = AIHUB_PRESENCE_INDETERMINATE;
  finding.confidence = 0.5;
  finding.urgency = AIHUB_URGENCY_ROUTINE;
  snprintf(text, sizeof text, "%u frames", (unsigned)frames);
  finding.text = text;
  rc = h->add_finding(job, &finding, &index);
  if (rc != AIHUB_OK) return rc;

  memset(&m, 0, sizeof m);
  m.struct_size = sizeof m;
  m.code.value = "C-MEAN-HU";
  m.code.scheme = "99AIHUB";
  m.code.meaning = "Mean intensity";
  m.value = self->scale * sum / (double)n;
  m.unit_ucum = "[hnsf'U]";
  m.unit_meaning = "Hounsfield unit";
  rc = h->add_measurement(job, index, &m);
  if (rc != AIHUB_OK) return rc;

  memset(&region, 0, sizeof region);
  region.struct_size = sizeof region;
  region.series_index = 0;
  region.frame_index = mid;
  region.graphic_type = AIHUB_GRAPHIC_POINT;
  points[0] = (float)g.columns / 2;
  points[1] = (float)g.rows / 2;
  region.points = points;
  region.point_count = 1;
  return h->add_region(job, index, &region);
}

void aihub_plugin_destroy(aihub_plugin_instance* self) { free(self); }

int32_t aihub_plugin_self_test(aihub_plugin_instance* self) { return self != NULL ? AIHUB_OK : AIHUB_INTERNAL; }
