// `aihubd analyze`: the offline validation loop. Routes every study in a folder through the enabled plugins,
// runs the jobs through the durable job store (so a killed run resumes), and writes each result as
// OUTPUT/<StudyInstanceUID>/<plugin-id>.sr.dcm, .fhir.json and .oru.hl7 through the outbox.
#pragma once

#include <filesystem>
#include <ostream>

#include "config/site_config.h"
#include "core/router.h"

namespace aihub::core {

struct AnalyzeOptions {
  std::filesystem::path input;
  std::filesystem::path output;
  StudyContext context;      // e.g. --calling-ae for department rules
};

// Prints one line per finding (and per failed job, with its reason) to `out`. Returns the process exit
// status: 0 when every job succeeded or was not applicable, 1 when a job failed, 2 on a setup error.
int RunAnalyze(const config::SiteConfig& config, const AnalyzeOptions& options, std::ostream& out);

}  // namespace aihub::core
