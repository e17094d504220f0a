/* Declares ABI major 2: the host must refuse it. */
#include <aihub/plugin_api.h>

static const aihub_plugin_descriptor kDescriptor = {sizeof(aihub_plugin_descriptor), 2, 0, "abi-major2",
                                                    "ABI 2 (test plugin)", "2.0.0", "none", "aihub tests",
                                                    0, 0};
const aihub_plugin_descriptor* aihub_plugin_describe(void) { return &kDescriptor; }
int32_t aihub_plugin_create(const aihub_host_api* host, aihub_plugin_context* ctx, aihub_plugin_instance** out) {
  (void)host;
  (void)ctx;
  *out = 0;
  return AIHUB_UNIMPLEMENTED;
}
int32_t aihub_plugin_execute(aihub_plugin_instance* instance, aihub_job* job) {
  (void)instance;
  (void)job;
  return AIHUB_UNIMPLEMENTED;
}
void aihub_plugin_destroy(aihub_plugin_instance* instance) { (void)instance; }
