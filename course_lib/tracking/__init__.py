"""Video: read and write it, track instances from frame to frame, draw the result.

* :mod:`~course_lib.tracking.track`: the course's online tracker (:class:`~course_lib.tracking.track.Tracker`),
* :mod:`~course_lib.tracking.mask_rois`: masks kept as RoI crops and their IoU,
* :mod:`~course_lib.tracking.trackers`: every tracker by name (the course's settings, boxmot's), behind one small interface,
* :mod:`~course_lib.tracking.video_io`: frames in, MP4 and GIF out,
* :mod:`~course_lib.tracking.annotate`: detect a stream of frames, draw one frame's instances,
* :mod:`~course_lib.tracking.pipeline`: the timed video pipeline (decode, detect, track, draw, encode; threads; the budget),
* :mod:`~course_lib.tracking.track_metrics`: identity switches, mask flicker, and the one comparison of trackers (TrackEval, ms/frame, flicker).
"""
