#pragma once
// Umbrella header: everything mlnc offers on the host.

#include <mlnc/backend.hpp>
#include <mlnc/config.hpp>
#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/etf.hpp>
#include <mlnc/io/counts.hpp>
#include <mlnc/io/label_file.hpp>
#include <mlnc/io/npy.hpp>
#include <mlnc/metrics.hpp>
#include <mlnc/optimum.hpp>
#include <mlnc/objective.hpp>
#include <mlnc/pal.hpp>
#include <mlnc/predict.hpp>
#include <mlnc/scores.hpp>
#include <mlnc/synthetic.hpp>
#include <mlnc/tagwise.hpp>
#include <mlnc/types.hpp>
#include <mlnc/ufm.hpp>
