#pragma once
// Umbrella header: everything mlnc offers on the host.

#include <mlnc/backend.hpp>
#include <mlnc/config.hpp>
#include <mlnc/error.hpp>
#include <mlnc/labels.hpp>
#include <mlnc/pal.hpp>
