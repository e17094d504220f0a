// Test plugin "faulty": misbehaves as its config says (`fault:`), with hand-written entry points (no helper)
// so it can throw across the C ABI like a careless plugin would.
//   none | error | throw | nan_confidence | bad_urgency | too_many_findings | not_applicable | create_fails
//   | bad_region | huge_text
#include <aihub/plugin_api.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

struct aihub_plugin_instance {
  const aihub_host_api* host;
  std::string fault;
};

namespace {

const aihub_plugin_descriptor kDescriptor = {
    sizeof(aihub_plugin_descriptor), AIHUB_PLUGIN_API_VERSION_MAJOR, AIHUB_PLUGIN_API_VERSION_MINOR,
    "faulty", "Faulty (test plugin)", "0.1.0", "none", "aihub tests", "{Modality: CT}", 0};

aihub_finding MakeFinding(double confidence, int32_t urgency) {
  aihub_finding f;
  std::memset(&f, 0, sizeof f);
  f.struct_size = sizeof f;
  f.code = {"F-1", "99AIHUB", "Faulty finding"};
  f.presence = AIHUB_PRESENCE_PRESENT;
  f.confidence = confidence;
  f.urgency = urgency;
  return f;
}

}  // namespace

extern "C" {

AIHUB_PLUGIN_EXPORT const aihub_plugin_descriptor* aihub_plugin_describe(void) { return &kDescriptor; }

AIHUB_PLUGIN_EXPORT int32_t aihub_plugin_create(const aihub_host_api* host, aihub_plugin_context* ctx,
                                                aihub_plugin_instance** out) {
  const char* fault = host->config_string(ctx, "fault");
  if (fault != nullptr && std::string(fault) == "create_fails") {
    host->context_set_error(ctx, "model file /nonexistent/model.pt not found");
    return AIHUB_NOT_FOUND;
  }
  *out = new aihub_plugin_instance{host, fault ? fault : "none"};
  return AIHUB_OK;
}

AIHUB_PLUGIN_EXPORT int32_t aihub_plugin_execute(aihub_plugin_instance* self, aihub_job* job) {
  const aihub_host_api* h = self->host;
  const std::string& fault = self->fault;
  uint32_t index = 0;
  if (fault == "error") {
    h->job_set_error(job, "model output had the wrong shape");
    return AIHUB_INTERNAL;
  }
  if (fault == "throw") throw std::runtime_error("boom from faulty plugin");
  if (fault == "not_applicable") {
    h->job_set_error(job, "not applicable: needs at least 500 slices");
    return AIHUB_FAILED_PRECONDITION;
  }
  if (fault == "nan_confidence") {
    aihub_finding f = MakeFinding(std::nan(""), AIHUB_URGENCY_ROUTINE);
    h->add_finding(job, &f, &index);  // ignores the refusal, as a careless plugin would
    return AIHUB_OK;
  }
  if (fault == "bad_urgency") {
    aihub_finding f = MakeFinding(0.5, 7);
    h->add_finding(job, &f, &index);
    return AIHUB_OK;
  }
  if (fault == "too_many_findings") {
    for (int i = 0; i < 100; ++i) {
      aihub_finding f = MakeFinding(0.5, AIHUB_URGENCY_ROUTINE);
      h->add_finding(job, &f, &index);
    }
    return AIHUB_OK;
  }
  if (fault == "bad_region") {
    aihub_finding f = MakeFinding(0.5, AIHUB_URGENCY_ROUTINE);
    if (h->add_finding(job, &f, &index) != AIHUB_OK) return AIHUB_INTERNAL;
    const float points[] = {1e9f, -5.0f};
    aihub_region r;
    std::memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    r.graphic_type = AIHUB_GRAPHIC_POINT;
    r.points = points;
    r.point_count = 1;
    h->add_region(job, index, &r);
    return AIHUB_OK;
  }
  if (fault == "huge_text") {
    std::string text(100000, 'x');
    aihub_finding f = MakeFinding(0.5, AIHUB_URGENCY_ROUTINE);
    f.text = text.c_str();
    h->add_finding(job, &f, &index);
    return AIHUB_OK;
  }
  aihub_finding f = MakeFinding(0.25, AIHUB_URGENCY_ROUTINE);
  f.presence = AIHUB_PRESENCE_ABSENT;
  return h->add_finding(job, &f, &index);
}

AIHUB_PLUGIN_EXPORT void aihub_plugin_destroy(aihub_plugin_instance* self) { delete self; }

}  // extern "C"
