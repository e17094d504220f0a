// `aihubd analyze`: the offline validation loop. Routes every study in a folder through the enabled plugins,
// runs the jobs through the durable job store (so a killed run resumes), and writes each result as
// OUTPUT/<StudyInstanceUID>/<plugin-id>.sr.dcm, .fhir.json and .oru.hl7 through the outbox.
#pragma once

#include <filesystem>
#include <ostream>

#include "compose/result.h"
#include "config/site_config.h"
#include "core/job_runner.h"
#include "core/router.h"

namespace aihub::core {

struct AnalyzeOptions {
  std::filesystem::path input;
  std::filesystem::path output;
  StudyContext context;      // e.g. --calling-ae for department rules
};

// Prints one line per finding (and per failed job, with its reason) to `out`. Returns the process exit
// status: 0 when every job succeeded or was not applicable, 1 when a job failed, 2 on a setup error.
// One line per finding: "<study uid> <plugin> <version>: <meaning> PRESENT p=0.93 CRITICAL left | Volume 12 mL".
std::string FindingLine(const Result& result, const Finding& finding);

// Writes every encoding of every result to OUTPUT/<StudyInstanceUID>/<plugin-id>.{sr.dcm,fhir.json,oru.hl7},
// whatever the governance mode: analyze and the folder inbox are the model team's validation loop, not a
// delivery to clinicians.
DeliveryPlanner FilePlanner(const std::filesystem::path& output);

int RunAnalyze(const config::SiteConfig& config, const AnalyzeOptions& options, std::ostream& out);

}  // namespace aihub::core
