/* Lacks aihub_plugin_execute: the host must refuse it and name the missing entry point. */
#include <aihub/plugin_api.h>

static const aihub_plugin_descriptor kDescriptor = {
    sizeof(aihub_plugin_descriptor), AIHUB_PLUGIN_API_VERSION_MAJOR, AIHUB_PLUGIN_API_VERSION_MINOR,
    "missing-execute", "No execute (test plugin)", "1.0.0", "none", "aihub tests", 0, 0};
const aihub_plugin_descriptor* aihub_plugin_describe(void) { return &kDescriptor; }
int32_t aihub_plugin_create(const aihub_host_api* host, aihub_plugin_context* ctx, aihub_plugin_instance** out) {
  (void)host;
  (void)ctx;
  *out = 0;
  return AIHUB_OK;
}
void aihub_plugin_destroy(aihub_plugin_instance* instance) { (void)instance; }
