<?php
const BODY_RELEASE = 'v1';
