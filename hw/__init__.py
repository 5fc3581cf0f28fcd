"""Amaranth HDL blocks of the accelerator, all parameterised from :mod:`moeaccel.config`.

Building blocks the datapath blocks share for timing closure (each documented in its module):

* :mod:`hw.skid_buffer` - a zero-latency stream stage with a registered ``ready``;
* :mod:`hw.register_slice` - a one-cycle stream stage with registered ``valid`` and payload;
* :mod:`hw.credit_buffer` - the output FIFO of a pipeline that never stalls, with a registered
  credit instead of a ``ready`` chain through the pipeline's enables;
* :mod:`hw.sliced_memory` - a memory stored as bit slices of the full depth, so that each slice
  maps onto one block RAM with no depth multiplexer after its output.
"""
