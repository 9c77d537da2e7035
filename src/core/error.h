// The public error type lives in the API header; core code includes it from here.
#pragma once

#include "sdflow/error.h"
